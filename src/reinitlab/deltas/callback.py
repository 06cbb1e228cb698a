"""Lightning glue for `reinitlab.deltas.movement`: track weight movement and CKA while a job fine-tunes.

`DeltaTracker` keeps two references: the pretrained encoder (taken when the tracker is built,
before fit and so before the reinit) and the encoder at fit start (taken in `on_fit_start`; the
tracker must come after `ReinitCallback` in the callback list, Lightning calls them in order).
At every validation (not the sanity check) and at fit end it logs, to every logger (CSV, W&B):

    deltas/layer_07/{all,attention,ffn}   relative movement from fit start
    deltas/layer_07/from_pretrained       relative distance of the whole layer to pretrained
    deltas/cka/layer_07                   linear CKA with the fit-start representations of a
                                          fixed dev batch (also deltas/cka/embeddings)
    deltas/head/L07H03                    per-head movement from fit start (layer 7, head 3;
                                          scalars, so W&B panels can compare heads across runs)

and with a W&B logger also a layers × heads heatmap image (`deltas/heads`) and a per-layer
table (`deltas/table`). `result` holds the final matrices
for the job's record (schema in README "Weight movement"). The fit-start snapshot and the
fit-start features are part of the callback's checkpoint state, so a resumed job measures
from the same start.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from reinitlab.deltas.movement import (
    MOVEMENT_PARTS,
    Snapshot,
    head_movement,
    layer_movement,
    linear_cka,
    snapshot_encoder,
)


def _layer_name(i: int) -> str:
    return f"layer_{i + 1:02d}"


def head_metric(layer: int, head: int) -> str:
    """The logged name of one head's movement, 1-based: `deltas/head/L07H03` (zero-padded so
    W&B sorts them; well inside W&B's metric-name limits)."""
    return f"deltas/head/L{layer:02d}H{head:02d}"


class DeltaTracker(L.Callback):
    """Measures how far each layer and head moves while a job fine-tunes (from fit start and from
    pretrained) and how its dev-batch representations drift (CKA); see the module docstring."""

    def __init__(self, model: torch.nn.Module, cka_loader: DataLoader | None = None):
        self.pretrained: Snapshot = snapshot_encoder(model)
        self.start: Snapshot | None = None
        self.cka_loader = cka_loader
        self.start_features: torch.Tensor | None = None  # [L+1, N, hidden] at fit start
        self.history: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self._last_logged_step: int | None = None

    @classmethod
    def from_config(cls, cfg, model: torch.nn.Module, data) -> DeltaTracker | None:
        """The tracker `cfg.deltas` asks for (None when disabled); the CKA batch is the first
        `deltas.cka_batch_size` examples of the (primary) dev set."""
        dcfg = cfg.get("deltas") or {}
        if not dcfg.get("enabled", False):
            return None
        size = int(dcfg.get("cka_batch_size", 64))
        loader = None
        if size > 0 and data.val_sets:
            dev = data.val_sets[0]
            subset = Subset(dev, range(min(size, len(dev))))
            loader = DataLoader(subset, batch_size=len(subset), collate_fn=data.collate)
        return cls(model, loader)

    @staticmethod
    def _model(pl_module: L.LightningModule) -> torch.nn.Module:
        return getattr(pl_module, "model", pl_module)

    def _features(self, model: torch.nn.Module) -> torch.Tensor | None:
        if self.cka_loader is None:
            return None
        from reinitlab.probing.features import extract_features

        return extract_features(model, self.cka_loader)[0]["mean"]

    # -- hooks ----------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Take the fit-start snapshot and features (post-reinit); a restored start is kept."""
        if self.start is not None:  # restored from a checkpoint: keep the original start
            return
        self.take_start(self._model(pl_module))

    def take_start(self, model: torch.nn.Module) -> None:
        """Snapshot `model` (after its reinit) as the start that movement is measured from."""
        self.start = snapshot_encoder(model)
        self.start_features = self._features(model)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure and log after each real validation (not the sanity check), into `history`."""
        if trainer.sanity_checking or self.start is None:
            return
        self._measure(trainer, pl_module, keep_history=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure the final weights into `result`, the matrices the job's record keeps."""
        if self.start is None:
            return
        self.result = self._measure(trainer, pl_module, keep_history=False)

    # -- measuring ------------------------------------------------------------------------
    def compute(self, model: torch.nn.Module) -> dict[str, Any]:
        """Every measurement of `model` now, in the record's schema (without `history`)."""
        moved = layer_movement(model, self.start)
        from_pre = layer_movement(model, self.pretrained)
        num_layers = len(self.start)
        out: dict[str, Any] = {
            "layer_names": [_layer_name(i) for i in range(num_layers)],
            "layer": {p: moved[p].tolist() for p in MOVEMENT_PARTS},
            "layer_from_pretrained": {p: from_pre[p].tolist() for p in MOVEMENT_PARTS},
            "head": head_movement(model, self.start).tolist(),
            "head_from_pretrained": head_movement(model, self.pretrained).tolist(),
        }
        if self.start_features is not None:
            from reinitlab.probing.features import layer_names

            now = self._features(model)
            out["cka"] = {
                "layer_names": layer_names(num_layers),
                "values": [linear_cka(a, b) for a, b in zip(self.start_features, now, strict=True)],
            }
        return out

    def _measure(self, trainer, pl_module, keep_history: bool) -> dict[str, Any]:
        return self.measure(
            self._model(pl_module), int(trainer.global_step), trainer.loggers, keep_history
        )

    def measure(
        self, model: torch.nn.Module, step: int, loggers: list, keep_history: bool
    ) -> dict[str, Any]:
        """Measure `model` at `step`, log it to `loggers` (once per step) and return the result;
        `keep_history` adds it to the per-validation history. A stack calls this per member."""
        result = self.compute(model)
        if keep_history:
            self.history.append({"step": step, "layer_all": result["layer"]["all"]})
        result["history"] = list(self.history)
        if step != self._last_logged_step:  # fit end right after a validation: same numbers
            self._log(loggers, result, step)
            self._last_logged_step = step
        return result

    @staticmethod
    def scalars(result: dict[str, Any]) -> dict[str, float]:
        """The flat `deltas/...` metrics of one measurement."""
        out: dict[str, float] = {}
        for i, name in enumerate(result["layer_names"]):
            for part in MOVEMENT_PARTS:
                out[f"deltas/{name}/{part}"] = result["layer"][part][i]
            out[f"deltas/{name}/from_pretrained"] = result["layer_from_pretrained"]["all"][i]
        for i, row in enumerate(result.get("head") or []):
            for h, value in enumerate(row):
                out[head_metric(i + 1, h + 1)] = value
        if "cka" in result:
            for name, value in zip(
                result["cka"]["layer_names"], result["cka"]["values"], strict=True
            ):
                out[f"deltas/cka/{name}"] = value
        return out

    def _log(self, loggers: list, result: dict[str, Any], step: int) -> None:
        metrics = self.scalars(result)
        for logger in loggers:
            if type(logger).__name__ == "WandbLogger":
                extra = {"deltas/heads": _heatmap_image(result["head"], step)}
                extra["deltas/table"] = _layer_table(result)
                logger.log_metrics({**metrics, **extra}, step=step)
            else:
                logger.log_metrics(metrics, step=step)

    # -- checkpoint state (resume) --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The fit-start snapshot, features and history, so a resumed job measures from the same
        start (the pretrained snapshot is retaken from the reloaded pretrained weights)."""
        return {
            "start": self.start,
            "start_features": self.start_features,
            "history": self.history,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the fit-start reference and history; `on_fit_start` then keeps them."""
        self.start = state_dict.get("start")
        self.start_features = state_dict.get("start_features")
        self.history = list(state_dict.get("history", []))


def _layer_table(result: dict[str, Any]):
    """A wandb.Table, one row per layer: movement (all/attention/ffn), from pretrained, CKA,
    then the per-head movement."""
    import wandb

    heads = len(result["head"][0]) if result["head"] else 0
    columns = ["layer", "all", "attention", "ffn", "from_pretrained", "cka"]
    columns += [f"head_{h + 1:02d}" for h in range(heads)]
    cka = (
        dict(zip(result["cka"]["layer_names"], result["cka"]["values"], strict=True))
        if "cka" in result
        else {}
    )
    rows = [
        [
            name,
            *(result["layer"][p][i] for p in MOVEMENT_PARTS),
            result["layer_from_pretrained"]["all"][i],
            cka.get(name, float("nan")),
            *result["head"][i],
        ]
        for i, name in enumerate(result["layer_names"])
    ]
    return wandb.Table(columns=columns, data=rows)


def _heatmap_image(head: list[list[float]], step: int):
    """A wandb.Image of the per-head movement: the report's figure (`reinitlab.deltas.figure`)."""
    import matplotlib.pyplot as plt
    import wandb

    from reinitlab.deltas.figure import head_movement_figure

    fig = head_movement_figure(head, f"per-head movement from fit start, step {step}")
    image = wandb.Image(fig)
    plt.close(fig)
    return image
