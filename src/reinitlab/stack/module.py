"""Lightning glue for a stack: one LightningModule that fits K members' stacked weights.

Each member keeps its own `GlueClassifier` (task, dev metrics, history), logger and weight
movement tracker; this module runs them on the stack's shared batches and hands every member
what a solo job's trainer would: its own loss and metrics, logged to its own logger at the
same steps, its own validation history, and its own failure when its dev metric turns
non-finite (the others go on; see `reinitlab.stack.stacked` for why they are unaffected).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import nn

from reinitlab.data.packing import Packer
from reinitlab.errors import ReinitlabError
from reinitlab.stack.stacked import StackedModel
from reinitlab.training.metrics import predictions
from reinitlab.training.module import GlueClassifier

log = logging.getLogger("reinitlab")


class StackedClassifier(L.LightningModule):
    """Fits `stack` on one batch stream for `members` (their classifiers, in stack order).

    `loggers[k]` (or None) gets member k's metrics, `deltas[k]` (or None) measures its
    movement at each validation; `on_member_failed(k, error)` is called once when member k
    fails (its gradients are zeroed from then on and its metrics no longer computed).
    """

    def __init__(
        self,
        stack: StackedModel,
        members: Sequence[GlueClassifier],
        loggers: Sequence,
        deltas: Sequence,
        on_member_failed: Callable[[int, BaseException], None] | None = None,
    ):
        super().__init__()
        self.stack = stack
        self.members = list(members)  # a plain list: their weights live in `stack`
        # the members' dev metrics, registered here so Lightning moves them to the device
        self.member_metrics = nn.ModuleList([m.val_metrics for m in members])
        self.loggers_ = list(loggers)
        self.deltas = list(deltas)
        self.on_member_failed = on_member_failed
        self.failed: dict[int, BaseException] = {}
        first = members[0]
        self.task = first.task
        self.call = None
        if first.padding_removal == "pack":  # checked on member 0's real weights
            packer = Packer.for_model(stack.template, check=False)
            self.call = lambda model, batch: packer.run_with(model, batch)
        elif first.padding_removal == "split":
            log.info("optim.remove_padding=split: a stack runs the padded batch (same result)")
        self._last_losses: torch.Tensor | None = None

    def live(self) -> list[int]:
        """Members still training."""
        return [k for k in range(self.stack.size) if k not in self.failed]

    def fail_member(self, k: int, error: BaseException) -> None:
        """Member k stops here: its error is kept (and reported once); the others go on."""
        self.failed[k] = error
        if self.on_member_failed is not None:
            self.on_member_failed(k, error)
        if not self.live():
            self.trainer.should_stop = True

    def _inputs(self, batch: dict[str, torch.Tensor]):
        call = self.call if "attention_mask" in batch else None
        return self.stack.run(batch, call)

    def training_step(self, batch, batch_idx):
        """The sum of the live members' losses (each member's gradient is its own loss's)."""
        losses, _ = self._inputs(batch)
        live = torch.tensor(self.live(), device=losses.device)
        self._last_losses = losses.detach()
        loss = losses[live].sum()
        self.log("train/loss", losses[live].mean(), prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Each member's `train/loss` to its own logger, every `log_every_n_steps` steps."""
        step = self.global_step
        every = max(1, int(self.trainer.log_every_n_steps))
        if self._last_losses is None or step % every:
            return
        for k in self.live():
            logger = self.loggers_[k]
            if logger is not None:
                loss = float(self._last_losses[k])
                logger.log_metrics({"train/loss": loss, "epoch": self.current_epoch}, step=step)

    def on_before_optimizer_step(self, optimizer) -> None:
        """A failed member's gradients are zeroed: it must not move nor spread NaN."""
        self.stack.zero_member_grads(sorted(self.failed))

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """`trainer.gradient_clip_val` per member: each clipped by its own gradient norm."""
        if not gradient_clip_val:
            return
        if str(gradient_clip_algorithm or "norm") == "value":
            self.stack.clip_grad_value_(float(gradient_clip_val))
        else:
            self.stack.clip_grad_norm_(float(gradient_clip_val))

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Update each live member's dev metrics with its predictions on the batch."""
        _, logits = self._inputs(batch)
        for k in self.live():
            preds = predictions(self.task, logits[k])
            self.member_metrics[k][dataloader_idx].update(preds, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        """Per live member: its metrics and history, a non-finite dev metric failing it alone,
        its weights copied back and its movement measured, all logged to its own logger."""
        step, epoch = self.global_step, self.current_epoch
        primaries = []
        for k in self.live():
            member = self.members[k]
            record = member.compute_validation()
            if self.trainer.sanity_checking:
                continue
            self.stack.copy_member_into(k, member.model)
            if not math.isfinite(record["val/primary"]):
                self.fail_member(k, ReinitlabError(member.non_finite_message(record, epoch, step)))
                continue
            member.history.append({"epoch": epoch, "step": step, "metrics": record})
            primaries.append(record["val/primary"])
            logger = self.loggers_[k]
            if logger is not None:
                logger.log_metrics({**record, "epoch": epoch}, step=step)
            if self.deltas[k] is not None:
                loggers = [] if logger is None else [logger]
                self.deltas[k].measure(member.model, step, loggers, keep_history=True)
        if primaries:
            self.log("val/primary", sum(primaries) / len(primaries), prog_bar=True)

    def finish_members(self) -> None:
        """After fit: each live member's final weights in its own model, its final movement."""
        for k in self.live():
            self.stack.copy_member_into(k, self.members[k].model)
            delta = self.deltas[k]
            if delta is not None and delta.start is not None:
                loggers = [] if self.loggers_[k] is None else [self.loggers_[k]]
                delta.result = delta.measure(
                    self.members[k].model, self.global_step, loggers, keep_history=False
                )

    def configure_optimizers(self):
        """The members' optimizer over the stacked weights: AdamW is elementwise, so this is each
        member's own AdamW state and schedule (the recipe is shared: it is part of the group)."""
        return self.members[0].optimizers_for(self.stack.named_stacked(), self.trainer)


__all__ = ["StackedClassifier"]
