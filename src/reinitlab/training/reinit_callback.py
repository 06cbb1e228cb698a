"""Lightning glue around the pure-PyTorch reinit: apply the planned scheme once, at fit start."""

from __future__ import annotations

from typing import Any

import lightning as L

from reinitlab.reinit import ResetTarget, SchemePlan, apply_plan, install_head_masks


class ReinitCallback(L.Callback):
    """Applies a `SchemePlan` (or a plain list of `ResetTarget`s) when fitting starts, after
    the model is on its device: layer order first, then the resets.

    The `applied` flag is saved in checkpoints, so a job resumed from a checkpoint does not
    re-initialize (or re-permute) the weights it has already fine-tuned. Head masks are forward
    hooks, not weights: they are (re)installed at `setup` of every stage (fit, validate, test,
    predict), resumed or not.
    """

    def __init__(self, plan: SchemePlan | list[ResetTarget], std: float, seed: int):
        self.plan = plan if isinstance(plan, SchemePlan) else SchemePlan(targets=list(plan))
        self.targets = self.plan.targets
        self.std = std
        self.seed = seed
        self.applied = False
        self.reset_counts: dict[str, int] = {}

    @staticmethod
    def _model(pl_module: L.LightningModule):
        return getattr(pl_module, "model", pl_module)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Re-install head masks: they are forward hooks, not weights, so every stage needs them."""
        if self.plan.masked_heads:
            install_head_masks(self._model(pl_module), self.plan.masked_heads)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Apply the plan once, now that the model is on its device; skipped when a checkpoint says
        it was already applied."""
        if self.applied:
            return
        self.reset_counts = apply_plan(
            self._model(pl_module), self.plan, std=self.std, seed=self.seed
        )
        self.applied = True

    def state_dict(self) -> dict[str, Any]:
        """Whether the plan was applied (plus seed, reset counts), so a resume does not redo it."""
        return {"applied": self.applied, "seed": self.seed, "reset_counts": self.reset_counts}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the `applied` flag and the reset counts the resumed job's record reports."""
        self.applied = bool(state_dict.get("applied", False))
        self.reset_counts = dict(state_dict.get("reset_counts", {}))  # for a resumed job's record
