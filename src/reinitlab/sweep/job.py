"""The job's side of the sweep ledger (`reinitlab.sweep.ledger`): claim, run, record.

Every Hydra job -- a single run or one job of a sweep, on any launcher -- goes through
`run_tracked`: it claims the job's key (skipping it when it is already completed, or running
in another live process), runs it, and records how it ended. A failure is always shown on the
console with the job's own error, even when the disk is too full to record it; a full disk
stops the sweep (`DiskFullError`) instead of failing every later job the same way.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reinitlab.errors import ReinitlabError
from reinitlab.sweep.ledger import (
    INTERRUPTED,
    Attempt,
    DiskFullError,
    Skip,
    Terminated,
    claim,
    disk_full,
    error_line,
    failure_kind,
)

log = logging.getLogger("reinitlab")


@dataclass
class HydraJob:
    """Where the current Hydra job writes and how it was asked for."""

    output_dir: Path
    root: Path  # the sweep dir under -m, the run dir otherwise: where its twins are found
    overrides: list[str]
    multirun: bool


def current_hydra_job() -> HydraJob | None:
    """The running Hydra job, or None outside a Hydra app (tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    root = Path(hc.sweep.dir) if multirun else output_dir
    return HydraJob(output_dir, root, list(hc.overrides.task), multirun)


def resume_command(job: HydraJob) -> str:
    """The command that resumes a single run in its own directory (a new run dir would start
    from scratch)."""
    program = "python train.py" if sys.argv[0].endswith("train.py") else "reinitlab-train"
    args = [*job.overrides, f"hydra.run.dir={job.output_dir}"]
    return f"{program} {' '.join(shlex.quote(a) for a in args)}"


@contextmanager
def signals_recorded():
    """Record how a job was stopped: SIGTERM becomes `Terminated` (recorded as killed) --
    unless someone else already handles it (submitit ignores SIGTERM during a SLURM
    preemption) -- and SIGINT marks the job interrupted before Python raises
    KeyboardInterrupt (which Lightning turns into SystemExit)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated("killed by SIGTERM")

    def on_int(signum, frame):
        INTERRUPTED.set()
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if previous[signal.SIGTERM] in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_term)
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def log_to_file(message: str, level: int = logging.ERROR) -> None:
    """Write one line to the job's log file(s) only, not to the console."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None)
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


@dataclass
class Claimed:
    """A job this process may run: its Hydra job, key and the ledger attempt it holds."""

    job: HydraJob
    key: str
    attempt: Attempt


def claim_current(cfg) -> Claimed | Skip | None:
    """Claim the running Hydra job in the ledger: Claimed, or Skip (said on the console) when it
    is already completed or a live attempt elsewhere has it; None outside a Hydra app."""
    from reinitlab.sweep.jobkey import job_key

    job = current_hydra_job()
    if job is None:
        return None
    key = job_key(cfg)
    attempt = claim(job.root, key, job.output_dir, job.overrides)
    if not isinstance(attempt, Skip):
        return Claimed(job, key, attempt)
    where = attempt.job.dir
    if attempt.reason == "completed":
        print(f"[reinitlab] skip: job {key} already completed ({where})", flush=True)
    else:
        lease = attempt.job.lease or {}
        print(
            f"[reinitlab] skip: job {key} is running in {where} (pid {lease.get('pid')} on "
            f"{lease.get('host')})",
            flush=True,
        )
    return attempt


def record_failure(claimed: Claimed, e: BaseException) -> None:
    """Record how a claimed attempt failed and say so once; raises DiskFullError instead when
    the disk is full (the sweep must stop rather than fail every later job the same way)."""
    job, key = claimed.job, claimed.key
    problem = claimed.attempt.fail(e)
    kind = failure_kind(e)
    message = str(e) if isinstance(e, ReinitlabError) else error_line(e)
    line = f"job {key} {'failed' if kind == 'error' else kind}: {message}"
    if job.multirun:
        log.error("%s", line)  # once, on the console and in the job's log
    else:
        log_to_file(line)  # the entry point shows a single run's error itself, once
    if problem:
        print(f"[reinitlab] {problem}", file=sys.stderr, flush=True)
    if kind == "preempted" and not job.multirun:
        print(f"[reinitlab] resume this run with:\n  {resume_command(job)}", flush=True)
    if kind in ("interrupted", "killed") and not job.multirun:
        print(f"[reinitlab] {stopped_line(claimed, kind)}", file=sys.stderr, flush=True)
    if disk_full(e) or (problem and "No space left" in problem):
        raise DiskFullError(
            f"no space left on the device while job {key} wrote to {job.output_dir} "
            f"({error_line(e)}); free space, then run the same command again: completed "
            "jobs are kept"
        ) from e


def stop_code(exc: BaseException) -> int | None:
    """The exit code of a run or sweep stopped by Ctrl-C (130) or SIGTERM (143), None when
    `exc` is something else. Lightning turns a Ctrl-C in training into SystemExit(1), which
    only the flag set by our SIGINT handler tells apart from an error."""
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and INTERRUPTED.is_set()):
        return 130
    if isinstance(exc, Terminated):
        return 143
    return None


def stopped_sweep_line(sweep_dir: Path, code: int) -> str:
    """The one console line of a stopped sweep (each stopped job said its own line)."""
    how = "interrupted (Ctrl-C)" if code == 130 else "killed (SIGTERM)"
    where = shlex.quote(str(sweep_dir))
    return (
        f"the sweep was {how}; the jobs it stopped are recorded as such: `reinitlab status "
        f"{where}` lists them, and the same command run again re-runs only the unfinished jobs"
    )


def stopped_line(claimed: Claimed, kind: str) -> str:
    """The one console line of a single run stopped by Ctrl-C or SIGTERM: what happened, what
    was kept and how to run it again (the traceback, if any, is only in the job's log)."""
    how = "interrupted (Ctrl-C)" if kind == "interrupted" else "killed (SIGTERM)"
    return (
        f"{how}: job {claimed.key} stopped before it finished; no result was written, it is "
        f"recorded as {kind} in {shlex.quote(str(claimed.job.output_dir))} (details in its log). "
        f"Run it again with: {resume_command(claimed.job)}"
    )


def run_tracked(cfg, run: Callable[[Any], dict[str, Any]]) -> dict[str, Any] | None:
    """Run `run(cfg)` as one attempt of its job; None when a live attempt elsewhere has it,
    the completed record when the job is already done."""
    claimed = claim_current(cfg)
    if claimed is None:
        return run(cfg)
    if isinstance(claimed, Skip):
        return claimed.job.record if claimed.reason == "completed" else None
    try:
        with signals_recorded():
            record = run(cfg)
    except BaseException as e:
        record_failure(claimed, e)
        if os.environ.get("REINITLAB_PREEMPTED") == "1" and not isinstance(e, SystemExit):
            # Requeued by submitit: leave without a result (not a failed Hydra job), whatever
            # went wrong while the job was being torn down.
            raise SystemExit(-1) from e
        raise
    claimed.attempt.complete()
    return record
