"""The per-job result record: one JSON file, written atomically, that reports rely on."""

from __future__ import annotations

import math
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from reinitlab.atomic import write_json_atomic
from reinitlab.ledger import RESULT_FILENAME, Ledger

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
    return write_json_atomic(
        Path(output_dir) / RESULT_FILENAME, {"record_version": RECORD_VERSION, **record}
    )


def read_results(root: Path) -> list[dict[str, Any]]:
    """The completed record of every job under `root` (a run or sweep directory), each with
    its path; one per job however many attempts it had (the ledger decides)."""
    return [{**rec, "path": str(job.dir / RESULT_FILENAME)} for job, rec in Ledger(root).records()]
