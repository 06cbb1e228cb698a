"""Write files so that a reader never sees a half-written one (temp file + fsync + rename).

The one implementation for the whole project (result records, job state, caches, report
tables and figures). Importing it is cheap: torch is imported only by `torch_save_atomic`,
so launchers and the report can use it without loading torch.

Files are created with the process umask like any other tool (`tempfile.mkstemp` alone gives
0600, which leaves records on a shared cluster unreadable to the group), and JSON is strict:
non-finite floats are written as `null`, never as the non-standard `NaN`/`Infinity`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    """The process umask. `os.umask` can only be read by setting it, which races with threads
    creating files, so Linux's /proc/self/status is preferred; set-and-restore otherwise."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Called once, at import (under the import lock): no other thread of ours creates files
    # through this module yet.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would create: 0644 under umask 022


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` with the same suffix (so writers that infer the
    format from it, like matplotlib or pandas, still can); on success it is fsynced, given the
    umask's permissions and renamed onto `path`. On error it is removed and `path` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Atomically write `path` by calling `write` on a binary file object."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    """Atomically write `data` to `path`; returns `path`."""
    return _atomic_write(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> Path:
    """Atomically write `text` to `path` as UTF-8; returns `path`."""
    return write_bytes(path, text.encode("utf-8"))


def strict_json(obj: Any) -> Any:
    """`obj` with every non-finite float (python, numpy or a 0-d torch/numpy value) replaced
    by None, recursively through dicts, lists and tuples; numpy/torch scalars become python
    numbers. Anything else is returned as is (json's `default` handles it)."""
    if isinstance(obj, float):  # includes numpy.float64
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (str, int, type(None))):  # int includes bool
        return obj
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    # numpy scalars / 0-d arrays and 0-d torch tensors, without importing either
    if getattr(obj, "ndim", None) == 0 and callable(getattr(obj, "item", None)):
        try:
            value = obj.item()
        except (TypeError, ValueError, RuntimeError):
            return obj
        if isinstance(value, (bool, int, float, complex, str)):
            return strict_json(value) if not isinstance(value, complex) else str(value)
    return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of `obj` (see `strict_json`); unknown objects are written as str()."""
    kwargs.setdefault("default", str)
    return json.dumps(strict_json(obj), allow_nan=False, **kwargs)


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Atomically write `obj` as strict indented JSON (NaN/inf become null); returns `path`."""
    return write_bytes(path, dumps_strict(obj, indent=2, sort_keys=False).encode())


def torch_save_atomic(path: Path, obj: Any) -> Path:
    """Atomically `torch.save` `obj` to `path` (checkpoints, tensor caches); returns `path`."""
    import torch

    return _atomic_write(path, lambda f: torch.save(obj, f))


@contextmanager
def exclusive_lock(path: Path, waiting: str) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created when missing) for the block: one process
    builds a shared file (a chain stage, an assembled model) while the others wait for it,
    saying `waiting` on stderr. The OS releases it when the holder dies."""
    import fcntl
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[reinitlab] {waiting}", file=sys.stderr, flush=True)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
