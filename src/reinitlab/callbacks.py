"""Lightning glue around the pure-PyTorch reinit: apply the planned reset once, at fit start."""

from __future__ import annotations

from typing import Any

import lightning as L

from reinitlab.reinit import ResetTarget, apply_reset


class ReinitCallback(L.Callback):
    """Resets `targets` when fitting starts (after the model is on its device).

    The `applied` flag is saved in checkpoints, so a job resumed from a checkpoint does not
    re-initialize the weights it has already fine-tuned.
    """

    def __init__(self, targets: list[ResetTarget], std: float, seed: int):
        self.targets = targets
        self.std = std
        self.seed = seed
        self.applied = False
        self.reset_counts: dict[str, int] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.applied:
            return
        model = getattr(pl_module, "model", pl_module)
        self.reset_counts = apply_reset(model, self.targets, std=self.std, seed=self.seed)
        self.applied = True

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "seed": self.seed, "reset_counts": self.reset_counts}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.applied = bool(state_dict.get("applied", False))
        self.reset_counts = dict(state_dict.get("reset_counts", {}))  # for a resumed job's record
