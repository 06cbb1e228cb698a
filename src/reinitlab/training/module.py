"""LightningModule: fine-tune a sequence classifier on one GLUE task, GLUE metrics on every dev set."""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from reinitlab.data.length_split import DEFAULT_OVERHEAD_TOKENS, split_loss
from reinitlab.data.packing import Packer, PackingUnsupported
from reinitlab.data.tasks import TaskSpec
from reinitlab.errors import ReinitlabError
from reinitlab.training.metrics import glue_metrics, predictions

log = logging.getLogger("reinitlab")

# Devices with a fused AdamW kernel in torch >= 2.4; elsewhere torch's default is used.
FUSED_ADAMW_DEVICES = ("cpu", "cuda", "mps", "xpu")
# optim.remove_padding: how a batch avoids computing its padding. All three give the
# same logits, loss and gradient to float rounding.
REMOVE_PADDING = {
    "pack": "sequences end to end in rows, block-diagonal attention (reinitlab.data.packing)",
    "split": "length-sorted pieces, each padded to its own longest (reinitlab.data.length_split)",
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
        # the same update (to float rounding), a third of the step time on CPU.
        self.fused = fused
        # Batches are computed without most of their padding: the same batch, loss and
        # gradient, ~1.7x faster on CoLA. "pack" falls back to "split" for models
        # it can't verify (Packer.for_model says why).
        if remove_padding not in REMOVE_PADDING:
            raise ReinitlabError(
                f"optim.remove_padding: got {remove_padding!r}; allowed: "
                + "; ".join(f"{k} ({v})" for k, v in REMOVE_PADDING.items())
            )
        self.remove_padding = remove_padding
        self.split_overhead_tokens = split_overhead_tokens
        self._packer: Packer | None = None
        # QA is scored by the official SQuAD evaluation after each dev pass (qa_module)
        self.val_metrics = nn.ModuleList(
            () if task.is_qa else (glue_metrics(task) for _ in task.validation)
        )
        self.history: list[dict] = []

    def forward(self, **batch):
        """The wrapped model on the batch's keyword tensors (padded, no padding removal)."""
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
        """The batch's loss, computed without its padding as `padding_removal` says (a batch without
        an attention mask is used as collated); logs `train/loss`."""
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
        """Update dev set `dataloader_idx`'s metrics with the batch (packed when training packs)."""
        packed = "attention_mask" in batch and self.padding_removal == "pack"
        out = self._packer(batch) if packed else self.model(**batch)
        self.val_metrics[dataloader_idx].update(predictions(self.task, out.logits), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        """Compute and log every dev set's metrics and `val/primary`, and append them to `history`
        (not for the sanity check); a non-finite `val/primary` stops the job, naming the cause."""
        record = self.compute_validation()
        if not self.trainer.sanity_checking and not math.isfinite(record["val/primary"]):
            raise ReinitlabError(
                self.non_finite_message(record, self.current_epoch, self.global_step)
            )
        primary = {"val/primary": record["val/primary"]}
        others = {k: v for k, v in record.items() if k != "val/primary"}
        self.log_dict(others, add_dataloader_idx=False)
        self.log_dict(primary, prog_bar=True, add_dataloader_idx=False)
        if not self.trainer.sanity_checking:
            self.history.append(
                {"epoch": self.current_epoch, "step": self.global_step, "metrics": record}
            )

    def compute_validation(self) -> dict[str, float]:
        """Every dev set's metrics (then reset) and `val/primary`, the task's primary metric."""
        record: dict[str, float] = {}
        for i, metrics in enumerate(self.val_metrics):
            prefix = self.task.metric_prefix(i)
            for name, value in metrics.compute().items():
                record[f"{prefix}/{name}"] = float(value)
            metrics.reset()
        record["val/primary"] = record[f"val/{self.task.primary_metric}"]
        return record

    def non_finite_message(self, record: dict[str, float], epoch: int, step: int) -> str:
        """Why the job stops: which metric, which epoch (from 1), its value, the likely cause."""
        name = self.task.primary_metric
        value = record["val/primary"]
        weights_finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if not weights_finite:
            cause = (
                "the model's weights contain NaN/inf: training diverged (NaN or inf loss); "
                "try a lower optim.lr or check the labels and inputs"
            )
        elif name in ("pearson", "spearman"):
            cause = (
                f"a {name} correlation is undefined when the predictions (or the labels) are "
                "constant over the dev set: the model has collapsed to one output, e.g. after "
                "re-initializing many layers or with too high a learning rate"
            )
        else:
            cause = "the model's outputs on the dev set are not finite: training diverged"
        return (
            f"task {self.task.name}: dev metric val/{name} (val/primary) is {value} after "
            f"epoch {epoch + 1} (step {step}); a result with a "
            f"non-finite primary metric is not recorded. Likely cause: {cause}."
        )

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Lightning's mixed-precision plugin refuses to clip gradients before a fused optimizer
        step (with fp16 loss scaling the fused step unscales them itself). bf16-mixed has no
        loss scaling, so its gradients are the true ones: they are clipped as in fp32."""
        from lightning.pytorch.plugins.precision import Precision
        from lightning.pytorch.utilities import GradClipAlgorithmType

        plugin = self.trainer.precision_plugin
        if self.trainer.precision == "bf16-mixed" and getattr(plugin, "scaler", None) is None:
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val or 0.0, algorithm)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        """AdamW without weight decay on biases and LayerNorm weights, fused where every parameter's
        device allows it, with linear warmup (`warmup_ratio` of all steps) then linear decay to 0,
        stepped per optimizer step."""
        return self.optimizers_for(self.model.named_parameters(), self.trainer)

    def optimizers_for(self, named_parameters, trainer: L.Trainer) -> dict:
        """This module's optimizer recipe over `named_parameters` (a stack's stacked weights
        too), stepped by `trainer`: see `adamw_with_warmup`."""
        return adamw_with_warmup(
            named_parameters,
            trainer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            adam_eps=self.adam_eps,
            fused=self.fused,
        )


def adamw_with_warmup(
    named_parameters,
    trainer: L.Trainer,
    *,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    adam_eps: float,
    fused: bool,
) -> dict:
    """Lightning's optimizer config for fine-tuning: AdamW without weight decay on biases and
    LayerNorm weights (by parameter name), fused where every parameter's device allows it,
    with linear warmup (`warmup_ratio` of all steps) then linear decay to 0, per step."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = [(n, p) for n, p in named_parameters if p.requires_grad]
    groups = [
        {
            "params": [p for n, p in named if not any(nd in n for nd in no_decay)],
            "weight_decay": weight_decay,
        },
        {
            "params": [p for n, p in named if any(nd in n for nd in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    fused = fused and all(p.device.type in FUSED_ADAMW_DEVICES for _, p in named)
    if fused and trainer.precision == "16-mixed":
        # fp16 loss scaling: a fused step unscales the gradients itself, after Lightning
        # would clip them, so clipping needs the unfused step (the same update)
        log.info("optim.fused: not with trainer.precision=16-mixed; using torch's AdamW")
        fused = False
    optimizer = torch.optim.AdamW(groups, lr=lr, eps=adam_eps, fused=fused or None)
    total = int(trainer.estimated_stepping_batches)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
    }


# trainer.precision values reinitlab runs (Lightning accepts more). The weights stay fp32 in
# all of them, so AdamW's updates are applied as the recipe expects.
PRECISIONS = {
    "32-true": "fp32 weights and compute (the default)",
    "32": "the same as 32-true",
    "bf16-mixed": "fp32 weights, bf16 autocast (CUDA with compute capability >= 8.0, or CPU)",
    "16-mixed": "fp32 weights, fp16 autocast with loss scaling (CUDA only)",
}
# Lightning values refused, with the reason.
REFUSED_PRECISIONS = {
    "bf16-true": "keeps the weights themselves in bf16, where an AdamW update at lr 2e-5 (about "
    "1e-3 of a weight) is smaller than half a bf16 step and rounds away",
    "16-true": "keeps the weights themselves in fp16 (no loss scaling, no fp32 master weights)",
}


def accelerator_type(accelerator: str) -> str:
    """The device type Lightning will train on for `trainer.accelerator` (cpu, cuda, mps...)."""
    import torch

    accelerator = str(accelerator).lower()
    if accelerator == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    return "cuda" if accelerator == "gpu" and torch.cuda.is_available() else accelerator


def validate_trainer_config(cfg) -> str:
    """Check `trainer.precision` (against `trainer.accelerator`) before anything heavy loads;
    returns the precision. A ReinitlabError names the option, the value and the allowed ones.

    Refused: values outside PRECISIONS (with the reason for bf16-true/16-true); `16-mixed` on
    CPU (Lightning would silently switch it to bf16-mixed); `bf16-mixed` on a CUDA device
    without native bf16 (compute capability < 8.0, e.g. V100, T4)."""
    import torch

    trainer = cfg.get("trainer") or {}
    value = trainer.get("precision", "32-true")
    precision = str(value)
    allowed = "; ".join(f"{k} ({v})" for k, v in PRECISIONS.items())
    if precision not in PRECISIONS:
        why = REFUSED_PRECISIONS.get(precision)
        raise ReinitlabError(
            f"trainer.precision={value!r} is not supported"
            + (f": it {why}" if why else "")
            + f". Allowed: {allowed}"
        )
    device = accelerator_type(trainer.get("accelerator", "auto"))
    if precision == "16-mixed" and device == "cpu":
        raise ReinitlabError(
            "trainer.precision=16-mixed needs a CUDA device (fp16 autocast with loss scaling); "
            "this job would run on the CPU (trainer.accelerator="
            f"{trainer.get('accelerator', 'auto')}), where Lightning would silently use "
            "bf16-mixed instead. Use trainer.precision=bf16-mixed or 32-true on CPU."
        )
    if precision == "bf16-mixed" and device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        if major < 8:
            raise ReinitlabError(
                f"trainer.precision=bf16-mixed needs a GPU with native bf16 (compute capability "
                f">= 8.0, Ampere or newer); {torch.cuda.get_device_name()} has {major}.{minor}. "
                "Use trainer.precision=16-mixed or 32-true."
            )
    return "32-true" if precision == "32" else precision
