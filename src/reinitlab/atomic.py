"""Write files so that a reader never sees a half-written one (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, obj: Any) -> Path:
    data = json.dumps(obj, indent=2, sort_keys=False, default=str).encode()
    return _atomic_write(path, lambda f: f.write(data))


def torch_save_atomic(path: Path, obj: Any) -> Path:
    return _atomic_write(path, lambda f: torch.save(obj, f))
