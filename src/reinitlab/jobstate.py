"""Per-job bookkeeping that lets a sweep be resumed and inspected.

Each job directory holds, besides Hydra's files:
* `job.json`     -- the job's identity (`job_key`, see `reinitlab.jobkey`) and overrides;
* `running.json` -- while it runs: pid, host, start time (a crash leaves it behind; `status`
  tells such a stale marker from a live job by checking the pid on this host);
* `failed.json`  -- when it failed: the error's type and last line, and the traceback's tail;
* `result.json`  -- when it completed (`reinitlab.results`), carrying the same `job_key`.
All are written atomically. A job whose key already has a completed record anywhere under the
sweep directory is skipped, so re-running a sweep runs only its failed and missing jobs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reinitlab.atomic import write_json_atomic
from reinitlab.results import RESULT_FILENAME

JOB_FILENAME = "job.json"
RUNNING_FILENAME = "running.json"
FAILED_FILENAME = "failed.json"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def completed_records(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(path, record) of every completed result record under `root`."""
    for path in sorted(Path(root).rglob(RESULT_FILENAME)):
        rec = read_json(path)
        if rec and rec.get("status") == "completed":
            yield path, rec


def find_completed(root: Path, key: str) -> tuple[Path, dict[str, Any]] | None:
    for path, rec in completed_records(root):
        if rec.get("job_key") == key:
            return path, rec
    return None


def dirs_with_key(root: Path, key: str) -> list[Path]:
    """Job directories under `root` whose job.json names `key`."""
    out = []
    for path in sorted(Path(root).rglob(JOB_FILENAME)):
        info = read_json(path)
        if info and info.get("job_key") == key:
            out.append(path.parent)
    return out


class PreemptedError(RuntimeError):
    """The job saved a checkpoint and stopped because it was asked to (preemption signal)."""


def error_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return (lines[-1] if lines else repr(exc)).strip()


def slurm_job_id(env: dict[str, str] | None = None) -> str | None:
    """This job's SLURM id as squeue shows it and scancel takes it: `ARRAY_TASK` for an array
    task. An array task's bare SLURM_JOB_ID can equal the array's id, and `scancel <array id>`
    cancels every task of the sweep, not just this one."""
    env = os.environ if env is None else env
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return env.get("SLURM_JOB_ID")


@dataclass
class JobState:
    """The markers of one job directory; `search_root` is where completed twins are looked for
    (the sweep directory under -m, the run directory otherwise)."""

    output_dir: Path
    search_root: Path
    key: str
    overrides: list[str]

    def completed(self) -> tuple[Path, dict[str, Any]] | None:
        return find_completed(self.search_root, self.key)

    def start(self) -> None:
        (self.output_dir / FAILED_FILENAME).unlink(missing_ok=True)
        write_json_atomic(
            self.output_dir / JOB_FILENAME,
            {"job_key": self.key, "overrides": self.overrides},
        )
        write_json_atomic(
            self.output_dir / RUNNING_FILENAME,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.time(),
                "slurm_job_id": slurm_job_id(),
            },
        )

    def fail(self, exc: BaseException) -> None:
        preempted = isinstance(exc, PreemptedError) or (
            isinstance(exc, SystemExit) and os.environ.get("REINITLAB_PREEMPTED") == "1"
        )
        write_json_atomic(
            self.output_dir / FAILED_FILENAME,
            {
                "job_key": self.key,
                "kind": "preempted" if preempted else "error",
                "error": error_line(exc),
                "error_type": type(exc).__name__,
                "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)[-12:],
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "time": time.time(),
            },
        )
        (self.output_dir / RUNNING_FILENAME).unlink(missing_ok=True)

    def finish(self) -> None:
        (self.output_dir / RUNNING_FILENAME).unlink(missing_ok=True)


def job_state_from_hydra(cfg) -> JobState | None:
    """The JobState of the current Hydra job, or None outside a Hydra app (tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from reinitlab.jobkey import job_key

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    root = Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else output_dir
    return JobState(output_dir, root, job_key(cfg), list(hc.overrides.task))


def run_tracked(cfg, run: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Run `run(cfg)` with markers, or return the completed twin's record without running."""
    state = job_state_from_hydra(cfg)
    if state is None:
        return run(cfg)
    done = state.completed()
    if done is not None:
        path, record = done
        print(f"[reinitlab] skip: job {state.key} already completed ({path})", flush=True)
        return record
    state.start()
    try:
        record = run(cfg)
    except BaseException as e:
        state.fail(e)
        logging.getLogger("reinitlab").error("job %s failed: %s", state.key, error_line(e))
        if os.environ.get("REINITLAB_PREEMPTED") == "1" and not isinstance(e, SystemExit):
            # Requeued by submitit: leave without a result (not a failed Hydra job), whatever
            # went wrong while the job was being torn down.
            raise SystemExit(-1) from e
        raise
    state.finish()
    return record
