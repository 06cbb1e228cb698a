"""LightningModule: fine-tune a sequence classifier on one GLUE task, GLUE metrics on every dev set."""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from reinitlab.errors import ReinitlabError
from reinitlab.length_split import DEFAULT_OVERHEAD_TOKENS, split_loss
from reinitlab.metrics import glue_metrics, predictions
from reinitlab.packing import Packer, PackingUnsupported
from reinitlab.tasks import TaskSpec

log = logging.getLogger("reinitlab")

# Devices with a fused AdamW kernel in torch >= 2.4; elsewhere torch's default is used.
FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")
# optim.remove_padding: how a batch avoids computing its padding (issue 9). All three give the
# same logits, loss and gradient to float rounding.
REMOVE_PADDING = {
    "pack": "sequences end to end in rows, block-diagonal attention (reinitlab.packing)",
    "split": "length-sorted pieces, each padded to its own longest (reinitlab.length_split)",
    "off": "the padded batch as collated",
}


class GlueClassifier(L.LightningModule):
    """Logs `val/<metric>` for the primary dev set, `val_<name>/<metric>` for others (MNLI
    mismatched), and `val/primary`: the task's primary metric under one stable key.

    `history` keeps every validation's metrics so the result record can report the final and
    the best epoch without reading any logger.
    """

    def __init__(
        self,
        model: nn.Module,
        task: TaskSpec,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        adam_eps: float = 1e-8,
        fused: bool = True,
        remove_padding: str = "pack",
        split_overhead_tokens: float = DEFAULT_OVERHEAD_TOKENS,
    ):
        super().__init__()
        # from_pretrained returns the model in eval mode (dropout off); fine-tuning needs train
        # mode, and Lightning keeps whatever mode submodules are in.
        self.model = model.train()
        self.task = task
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.adam_eps = adam_eps
        # One fused AdamW kernel over all parameters instead of ~10 tensor ops per parameter:
        # the same update (to float rounding), a third of the step time on CPU (issue 9).
        self.fused = fused
        # Batches are computed without most of their padding: the same batch, loss and
        # gradient, ~1.7x faster on CoLA (issue 9). "pack" falls back to "split" for models
        # it can't verify (Packer.for_model says why).
        if remove_padding not in REMOVE_PADDING:
            raise ReinitlabError(
                f"optim.remove_padding: got {remove_padding!r}; allowed: "
                + "; ".join(f"{k} ({v})" for k, v in REMOVE_PADDING.items())
            )
        self.remove_padding = remove_padding
        self.split_overhead_tokens = split_overhead_tokens
        self._packer: Packer | None = None
        self.val_metrics = nn.ModuleList(glue_metrics(task) for _ in task.validation)
        self.history: list[dict] = []

    def forward(self, **batch):
        return self.model(**batch)

    @property
    def padding_removal(self) -> str:
        """The method in use: `remove_padding`, or "split" where packing was refused."""
        if self.remove_padding == "pack" and self._packer is None:
            try:
                self._packer = Packer.for_model(self.model)
            except PackingUnsupported as why:
                log.warning("optim.remove_padding=pack can't be used (%s); using split", why)
                self.remove_padding = "split"
        return self.remove_padding

    def training_step(self, batch, batch_idx):
        method = self.padding_removal if "attention_mask" in batch else "off"
        if method == "pack":
            loss = self._packer(batch).loss
        elif method == "split":
            loss = split_loss(self.model, batch, self.split_overhead_tokens)
        else:
            loss = self.model(**batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        packed = "attention_mask" in batch and self.padding_removal == "pack"
        out = self._packer(batch) if packed else self.model(**batch)
        self.val_metrics[dataloader_idx].update(predictions(self.task, out.logits), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        record: dict[str, float] = {}
        for i, metrics in enumerate(self.val_metrics):
            prefix = self.task.metric_prefix(i)
            for name, value in metrics.compute().items():
                record[f"{prefix}/{name}"] = float(value)
            metrics.reset()
        record["val/primary"] = record[f"val/{self.task.primary_metric}"]
        primary = {"val/primary": record["val/primary"]}
        others = {k: v for k, v in record.items() if k != "val/primary"}
        self.log_dict(others, add_dataloader_idx=False)
        self.log_dict(primary, prog_bar=True, add_dataloader_idx=False)
        if not self.trainer.sanity_checking:
            self.history.append(
                {"epoch": self.current_epoch, "step": self.global_step, "metrics": record}
            )

    def configure_optimizers(self):
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [
            {
                "params": [p for n, p in named if not any(nd in n for nd in no_decay)],
                "weight_decay": self.weight_decay,
            },
            {
                "params": [p for n, p in named if any(nd in n for nd in no_decay)],
                "weight_decay": 0.0,
            },
        ]
        fused = self.fused and all(p.device.type in FUSED_ADAMW_DEVICES for _, p in named)
        optimizer = torch.optim.AdamW(groups, lr=self.lr, eps=self.adam_eps, fused=fused or None)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(self.warmup_ratio * total), total
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
