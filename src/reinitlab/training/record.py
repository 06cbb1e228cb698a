"""The per-job result record: one JSON file, written atomically, that reports rely on.

It is defined here and only here (`build_record`), with one NaN-safe rule for the best and
final validation; it is read back only through the sweep ledger (`reinitlab.sweep.ledger`)."""

from __future__ import annotations

import math
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from reinitlab.atomic import write_json_atomic
from reinitlab.sweep.ledger import RESULT_FILENAME, Ledger

RECORD_VERSION = 1
_PACKAGES = (
    "reinitlab",
    "torch",
    "transformers",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "datasets",
    "wandb",
)


def package_versions() -> dict[str, str | None]:
    """Python's and the key packages' versions (None when not installed), for the record."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def best_and_final(history: list[dict]) -> tuple[dict | None, dict | None]:
    """(best validation by `val/primary`, last validation); the first wins a tie, and a
    non-finite value never wins (NaN compares false with everything, so `max` would keep it)."""
    if not history:
        return None, None

    def rank(h: dict) -> tuple[float, int]:
        value = h["metrics"]["val/primary"]
        return (value if math.isfinite(value) else -math.inf, -h["step"])

    return max(history, key=rank), history[-1]


def write_result(output_dir: Path, record: dict[str, Any]) -> Path:
    """Atomically write the job's result record (with its `record_version`) into `output_dir`."""
    return write_json_atomic(
        Path(output_dir) / RESULT_FILENAME, {"record_version": RECORD_VERSION, **record}
    )


def read_results(root: Path) -> list[dict[str, Any]]:
    """The completed record of every job under `root` (a run or sweep directory), each with
    its path; one per job however many attempts it had (the ledger decides)."""
    return [{**rec, "path": str(job.dir / RESULT_FILENAME)} for job, rec in Ledger(root).records()]


def build_record(
    job, stages: list[dict[str, Any]], started: float, trainer: Any = None
) -> dict[str, Any]:
    """The record of a finished `reinitlab.job.Job`, fitted by its own trainer or
    by `trainer` (a stack's, shared by its members)."""
    import torch

    from reinitlab.sweep.jobkey import job_key
    from reinitlab.training.builder import job_config

    cfg, spec, trainer = job.cfg, job.spec, trainer or job.trainer
    best, final = best_and_final(job.module.history)
    if final is None:
        raise RuntimeError("training ended without a validation run; no metrics to record")
    record = {
        "status": "completed",
        "job_key": job_key(cfg),
        "task": spec.task.name,
        "model": cfg.model.name,
        "num_layers": spec.num_layers,
        "scheme": {"name": cfg.reinit.name, "label": spec.label, **spec.params},
        "intermediate": list(spec.chain.tasks),
        "stages": stages,
        "reset_tensors": sorted(job.reinit_cb.reset_counts),
        "reset_values": int(sum(job.reinit_cb.reset_counts.values())),
        "reinit_plan": job.plan.summary(),  # permuted layer order, masked heads (1-based)
        "seed": int(cfg.seed),
        "seeds": spec.seeds,
        "primary_metric": spec.task.primary_metric,
        "train_size": job.data.num_train_examples,
        "max_train_samples": cfg.data.max_train_samples,
        # examples per dev set (SQuAD: questions, which its data module counts itself: its
        # dev set holds windows of them)
        "dev_sizes": getattr(job.data, "dev_sizes", None)
        or {v.name: len(d) for v, d in zip(spec.task.validation, job.data.val_sets, strict=False)},
        "final": final,
        "best": best,
        "history": job.module.history,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "stopped_early": bool(cfg.get("early_stopping"))
        and trainer.current_epoch < cfg.trainer.max_epochs,
        "wall_time_s": round(time.time() - started, 2),
        "device": str(next(trainer.lightning_module.parameters()).device),
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
        "config": job_config(cfg),
        **job.resume.record_fields(),
    }
    if job.probe_cb is not None:
        record["probe"] = job.probe_cb.results
    if job.delta_cb is not None:
        record["deltas"] = job.delta_cb.result
    return record


def summary_line(record: dict[str, Any], path: Path) -> str:
    """The one console line a finished job prints."""
    best, final = record["best"], record["final"]
    scheme = record["scheme"]
    return (
        f"[reinitlab] {record['task']} | {record['model']} | {scheme['name']} {scheme['label']} | "
        f"seed {record['seed']} | {record['primary_metric']}={final['metrics']['val/primary']:.4f} "
        f"(best {best['metrics']['val/primary']:.4f} @ epoch {best['epoch'] + 1}) | "
        f"{record['wall_time_s']:.0f}s | {path}"
    )
