"""Preemption-safe jobs: checkpoint on a signal, resume from it, end as if never interrupted.

SLURM (through submitit) sends USR2 -- `resume.signal`, the same as submitit's
SUBMITIT_PREEMPT_SIGNAL -- some time before it preempts or times out a job. The handler only
sets a flag; at the next training-batch end `PreemptionCheckpoint` writes
`<job dir>/checkpoints/preempt.ckpt` atomically, then hands the signal to the handler that was
there before (submitit's: it requeues the job and exits) or, with none (a local run), raises
`PreemptedError` so the job is marked failed/preempted. Lightning's own SLURM requeue is
turned off (`SLURMEnvironment(auto_requeue=False)`) so the two do not fight.

The requeued job -- or a re-run of the sweep, which finds the checkpoint of a job with the same
identity anywhere under the sweep directory -- passes it to `trainer.fit(ckpt_path=...)`, and
its W&B run resumes under the id stored in `<job dir>/wandb_id.txt`. To end with exactly the
metrics of an uninterrupted run, the checkpoint also holds the RNG states and the validation
history, and `ResumableDataLoader` (`reinitlab.data.batching`) shuffles as a pure function of
(seed, epoch) and skips the batches an interrupted epoch already trained on.
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from reinitlab.data.batching import ResumableDataLoader
from reinitlab.sweep.ledger import PreemptedError, read_job

CHECKPOINT_RELPATH = Path("checkpoints") / "preempt.ckpt"
WANDB_ID_FILENAME = "wandb_id.txt"
# Test hook: deliver the preemption signal to ourselves after this many optimizer steps.
PREEMPT_AT_STEP_ENV = "REINITLAB_PREEMPT_AT_STEP"


def rng_states() -> dict[str, Any]:
    """Every RNG state training draws from (torch CPU and CUDA, numpy, python), for a checkpoint."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states()` saved (CUDA only when it was saved and CUDA is here)."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def signal_number(name: str | int) -> signal.Signals:
    """A signal from its number or name, with or without `SIG` (`usr2`, `SIGUSR2`, 12)."""
    if isinstance(name, int):
        return signal.Signals(name)
    name = str(name).upper()
    return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]


class PreemptionCheckpoint(L.Callback):
    """Checkpoint at the first batch end after `signum`, then requeue (previous handler) or
    raise. Its state (saved in that checkpoint) restores the RNGs and the module's validation
    history; it also tells `ResumableDataLoader` how far the current epoch got."""

    def __init__(self, ckpt_path: Path, signum: signal.Signals):
        self.ckpt_path = Path(ckpt_path)
        self.signum = signum
        self.requested = False
        self.steps_run = 0  # optimizer steps done by this process (a resumed job: the rest)
        self._previous_handler: Any = None
        self._module: L.LightningModule | None = None
        self._restored: dict[str, Any] | None = None
        at = os.environ.get(PREEMPT_AT_STEP_ENV)
        self._signal_at_step = int(at) if at else None

    # -- signal ---------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Install the signal handler (keeping the previous one to hand the signal on to)."""
        self._module, self._trainer = pl_module, trainer
        self._previous_handler = signal.signal(self.signum, self._on_signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Put the previous signal handler back."""
        if self._previous_handler is not None:
            signal.signal(self.signum, self._previous_handler)
            self._previous_handler = None

    # -- checkpoint state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """RNG states, the module's validation history and the training loader's position."""
        history = list(getattr(self._module, "history", []))
        loader = getattr(self._trainer, "train_dataloader", None)
        position = loader.state_dict() if isinstance(loader, ResumableDataLoader) else None
        return {"rng": rng_states(), "history": history, "loader": position}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the restored state; it is applied at train start and at the first batch."""
        self._restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """On a resume, restore the validation history and move the training loader to where the
        interrupted epoch stopped."""
        if self._restored is None:
            return
        if hasattr(pl_module, "history"):
            pl_module.history = list(self._restored["history"])
        position = self._restored.get("loader")
        loader = trainer.train_dataloader
        resumable = isinstance(loader, ResumableDataLoader)
        if position and resumable and position["batches_trained"] < len(loader):
            # Lightning cannot load the loader's state itself here: configure_optimizers
            # (estimated_stepping_batches) made it start iterating before the checkpoint was
            # restored. Load it now and restart the fetcher's iterator from that position.
            loader.load_state_dict(position)
            iter(trainer.fit_loop._data_fetcher)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """On a resume, restore the RNG states once, just before the first batch trains."""
        if self._restored is not None and "rng" in self._restored:
            set_rng_states(self._restored.pop("rng"))  # right where the checkpoint left off

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Track the loader's position; after a signal, checkpoint (never on an epoch's last batch),
        then hand the signal to the previous handler or raise PreemptedError."""
        self.steps_run += 1
        if isinstance(loader := trainer.train_dataloader, ResumableDataLoader):
            loader.batches_trained = batch_idx + 1
        if self._signal_at_step is not None and trainer.global_step == self._signal_at_step:
            self._signal_at_step = None
            os.kill(os.getpid(), self.signum)
        if not self.requested or batch_idx + 1 >= trainer.num_training_batches:
            # An epoch's last batch: its validation has not run yet, and Lightning would skip
            # it after a restore. Checkpoint at the next batch end instead (or just finish).
            return
        self.requested = False
        tmp = self.ckpt_path.with_name(self.ckpt_path.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp)
        os.replace(tmp, self.ckpt_path)
        previous = self._previous_handler
        if callable(previous):  # submitit: requeue this job and exit
            os.environ["REINITLAB_PREEMPTED"] = "1"
            _finish_wandb_before_requeue()  # the requeue kills the job's processes at once
            previous(self.signum, None)
        raise PreemptedError(
            f"got {self.signum.name} at step {trainer.global_step}: checkpoint saved to "
            f"{self.ckpt_path}; re-run the job (or let SLURM requeue it) to resume"
        )


def _finish_wandb_before_requeue() -> None:
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    try:
        wandb.run.mark_preempting()
        wandb.finish()
    except Exception as e:  # noqa: BLE001 -- the checkpoint is saved; the requeue matters more
        print(f"[reinitlab] could not close the W&B run before requeue: {e}", flush=True)


@dataclass
class ResumePlan:
    """What a starting job resumes from: a checkpoint (or None) and its W&B run id."""

    output_dir: Path
    ckpt_path: Path | None
    wandb_id: str
    signum: signal.Signals
    keep_checkpoint: bool = False
    callback: PreemptionCheckpoint = field(init=False)

    def __post_init__(self) -> None:
        self.callback = PreemptionCheckpoint(self.output_dir / CHECKPOINT_RELPATH, self.signum)

    def fit_kwargs(self) -> dict[str, Any]:
        """`Trainer.fit` arguments: our own checkpoint (it holds RNG states, so not weights-only)."""
        if self.ckpt_path is None:
            return {}
        return {"ckpt_path": str(self.ckpt_path), "weights_only": False}

    def logger_kwargs(self) -> dict[str, Any]:
        """W&B logger arguments that continue the job's run (same id) after a resume."""
        return {"id": self.wandb_id, "resume": "allow"}

    @staticmethod
    def plugins() -> list:
        """Under SLURM, Lightning's environment without its own requeue (submitit requeues)."""
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []

    def record_fields(self) -> dict[str, Any]:
        """What the result record says about resuming: the checkpoint, steps run here, W&B id."""
        return {
            "resumed_from": None if self.ckpt_path is None else str(self.ckpt_path),
            "steps_this_process": self.callback.steps_run,
            "wandb_id": self.wandb_id,
        }

    def finish(self) -> None:
        """After the result is written, the checkpoint is no longer needed."""
        if not self.keep_checkpoint:
            for path in {self.output_dir / CHECKPOINT_RELPATH, self.ckpt_path}:
                if path is not None:
                    Path(path).unlink(missing_ok=True)


def plan_resume(cfg, output_dir: Path) -> ResumePlan:
    """Find this job's checkpoint: in its own directory (a requeued SLURM job), else in a
    directory of the same job identity under the sweep (a re-run sweep numbered differently).
    The W&B id comes from the same directory, or is created and stored for a later resume."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from reinitlab.sweep.jobkey import job_key

    opts = cfg.get("resume") or {}
    output_dir = Path(output_dir)
    signum = signal_number(opts.get("signal", "USR2"))
    if not opts.get("enabled", True):
        return ResumePlan(output_dir, None, _new_wandb_id(), signum)
    candidates = [output_dir]
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep_dir = Path(HydraConfig.get().sweep.dir)
        job = read_job(sweep_dir, job_key(cfg), output_dir) if sweep_dir.is_dir() else None
        twins = job.dirs if job is not None else []
        candidates += [d for d in twins if d.resolve() != output_dir.resolve()]
    source = next((d for d in candidates if (d / CHECKPOINT_RELPATH).is_file()), None)
    ckpt = None if source is None else source / CHECKPOINT_RELPATH
    id_dir = source or output_dir
    id_file = id_dir / WANDB_ID_FILENAME
    wandb_id = id_file.read_text().strip() if id_file.is_file() else _new_wandb_id()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / WANDB_ID_FILENAME).write_text(wandb_id + "\n")
    return ResumePlan(
        output_dir, ckpt, wandb_id, signum, keep_checkpoint=bool(opts.get("keep_checkpoint"))
    )


def _new_wandb_id() -> str:
    import secrets

    return secrets.token_hex(4)
