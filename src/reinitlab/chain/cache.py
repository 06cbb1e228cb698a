"""The shared on-disk cache of fine-tuned intermediate stages.

A stage is identified by a hash of everything that determines its weights (`stage_identity`):
the model spec, the chain up to and including the stage with each stage's recipe, data subset
and seeds, and the reinit scheme (+ its seed) when it was applied before the chain. Jobs of a
sweep that need the same stage (`task=cola intermediate=[wnli]` and `task=rte intermediate=[wnli]`
with one seed) therefore share it.

Files in the cache directory, per stage key:

* `<key>.pt`     the stage's base-model (encoder + pooler) state dict, written atomically;
* `<key>.json`   its metadata: identity, dev metrics, sha256 of the `.pt` file. Written last: it
                 is the completeness marker. A `.pt` without it, or whose checksum does not
                 match, is corrupt or half-written and is never used (the stage is retrained);
* `<key>.lock`   `fcntl.flock` lock: one job trains a stage, concurrent jobs wait, then reuse;
* `<key>.events.jsonl`  one line per use (`trained`, `reused`, `corrupt`, with job and time):
                 how tests (and users) see which job trained a stage and who reused it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from reinitlab.atomic import exclusive_lock, torch_save_atomic, write_json_atomic

CACHE_FORMAT = 1


class CorruptStageWarning(UserWarning):
    """A cached stage failed its completeness/checksum check and is being retrained."""


def stage_key(identity: dict[str, Any]) -> str:
    """`<chain>-<hash>`, e.g. `mnli+mrpc-3f2a...`: readable, and unique per identity."""
    blob = json.dumps({"format": CACHE_FORMAT, **identity}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:24]
    chain = "+".join(s["task"] for s in identity["stages"])
    return f"{chain}-{digest}"


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict: equal iff bit-identical."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class StageCache:
    """The cache directory of fine-tuned stages, one set of files per stage key (see the module
    docstring); safe to share between concurrent jobs through each stage's lock."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser()

    def paths(self, key: str) -> dict[str, Path]:
        """The stage's files: `pt`, `json`, `lock` and `events.jsonl`."""
        return {ext: self.root / f"{key}.{ext}" for ext in ("pt", "json", "lock", "events.jsonl")}

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold `<key>.lock` exclusively; says so on stderr when another job holds it."""
        with exclusive_lock(self.paths(key)["lock"], f"stage {key}: another job holds it, waiting"):
            yield

    def load(
        self, key: str, identity: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """(state, metadata) of a complete, intact stage; None when missing.

        A half-written or corrupt entry (no metadata, unreadable metadata, checksum or identity
        mismatch, unreadable tensors) warns, is logged as `corrupt`, and returns None. Call with
        the stage's lock held.
        """
        p = self.paths(key)
        if not p["pt"].exists() and not p["json"].exists():
            return None
        problem = None
        try:
            meta = json.loads(p["json"].read_text())
            data = p["pt"].read_bytes()
            if not meta.get("complete"):
                problem = "metadata not marked complete"
            elif _sha256_bytes(data) != meta.get("sha256"):
                problem = "checksum mismatch"
            elif meta.get("identity") != json.loads(json.dumps(identity, default=str)):
                problem = "identity mismatch"
            else:
                state = torch.load(io.BytesIO(data), weights_only=True)["base_state"]
                return state, meta
        except FileNotFoundError as e:
            problem = f"missing {Path(e.filename).name} (half-written)"
        except Exception as e:  # unreadable JSON or tensors
            problem = f"unreadable ({type(e).__name__})"
        warnings.warn(
            f"cached stage {key} in {self.root} is corrupt or half-written ({problem}); "
            "retraining it",
            CorruptStageWarning,
            stacklevel=2,
        )
        self.log_event(key, "corrupt", reason=problem)
        return None

    def save(
        self, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Write the weights, then the metadata with their checksum (the completeness marker)."""
        p = self.paths(key)
        p["json"].unlink(missing_ok=True)  # an old marker must never vouch for new weights
        torch_save_atomic(p["pt"], {"format": CACHE_FORMAT, "base_state": state})
        meta = {**meta, "sha256": _sha256_bytes(p["pt"].read_bytes()), "complete": True}
        write_json_atomic(p["json"], meta)
        return meta

    def log_event(self, key: str, event: str, **info: Any) -> None:
        """Append one event line (trained, reused, corrupt, ...) to the stage's log, fsynced."""
        line = {"event": event, "time": time.time(), "pid": os.getpid(), **info}
        with open(self.paths(key)["events.jsonl"], "a") as f:
            f.write(json.dumps(line, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def events(self, key: str) -> list[dict[str, Any]]:
        """The stage's event log, oldest first; empty when it has none."""
        path = self.paths(key)["events.jsonl"]
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
