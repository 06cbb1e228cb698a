"""The per-job result record: one JSON file, written atomically, that reports rely on."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from reinitlab.atomic import write_json_atomic

RESULT_FILENAME = "result.json"
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
    """(best validation by `val/primary`, last validation); the first wins a tie."""
    if not history:
        return None, None
    best = max(history, key=lambda h: (h["metrics"]["val/primary"], -h["step"]))
    return best, history[-1]


def write_result(output_dir: Path, record: dict[str, Any]) -> Path:
    return write_json_atomic(
        Path(output_dir) / RESULT_FILENAME, {"record_version": RECORD_VERSION, **record}
    )


def read_results(root: Path) -> list[dict[str, Any]]:
    """Every result record under `root` (a run or sweep directory), with its path."""
    import json

    records = []
    for path in sorted(Path(root).rglob(RESULT_FILENAME)):
        rec = json.loads(path.read_text())
        rec["path"] = str(path)
        records.append(rec)
    return records
