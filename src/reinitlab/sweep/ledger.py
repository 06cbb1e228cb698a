"""The sweep ledger: the one place that reads and writes a study's state.

A study's conclusions are only as good as its bookkeeping, so the sweeper (which jobs to
launch), each job (may I run?), `reinitlab status` and `reinitlab report` all ask this module
and get the same answer. State is files, so it survives crashes, lives beside the results
and needs no server:

* `<sweep>/sweep_plan.json` -- the plan: every planned job's key, overrides, label and its
  directory name, written atomically when a sweep starts (merged on a re-run), validated on
  read. A damaged plan is an error that names the file and how to recover.
* `<job dir>/job.json`     -- the job's key, overrides and how many attempts it has had.
* `<job dir>/running.json` -- the lease of the live attempt: host, pid, start, heartbeat and
  the lock file it holds. The lock (`<sweep>/.locks/<key>.lock`, flock'ed for the life of the
  attempt) is what makes "at most one live attempt per job" hold across concurrent sweeps
  and launchers: the OS releases it however the process ends, so a lease whose lock is free
  (or, seen from another host, whose heartbeat is stale) is taken over.
* `<job dir>/failed.json`  -- how the last attempt failed: kind (error, killed, preempted,
  interrupted) and the reason.
* `<job dir>/result.json`  -- the record of a completed job (`reinitlab.training.record`).

A job is its key (`reinitlab.sweep.jobkey`), never its job number or directory: every directory
holding one key is one job, whatever the number of attempts. reinitlab's sweeper gives each
key one directory (`<plan index>_<key>`), reused by re-runs and requeues; directories from
other sweepers are grouped by key, so a duplicate is never a second sample.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reinitlab.atomic import write_json_atomic
from reinitlab.errors import ReinitlabError

PLAN_FILENAME = "sweep_plan.json"
JOB_FILENAME = "job.json"
RUNNING_FILENAME = "running.json"
FAILED_FILENAME = "failed.json"
RESULT_FILENAME = "result.json"
LOCK_DIRNAME = ".locks"
PLAN_VERSION = 2

HEARTBEAT_S = 30.0  # how often a live attempt refreshes its lease
STALE_AFTER_S = 600.0  # a lease from another host with no heartbeat for this long is dead
CLAIM_WAIT_S = 2.0  # a lock held this long by someone else is a live attempt, not a probe

STATES = ("completed", "failed", "missing", "running", "corrupt")
FAILURE_KINDS = ("error", "killed", "preempted", "interrupted")


class LedgerError(ReinitlabError):
    """A ledger file is damaged or unwritable; the message names it and how to recover."""


class DiskFullError(ReinitlabError):
    """No space left where a job writes; a sweep stops at the first one instead of failing
    every remaining job the same way."""


class PreemptedError(RuntimeError):
    """The job saved a checkpoint and stopped because it was asked to (preemption signal)."""


class Terminated(BaseException):
    """SIGTERM (scancel, a dying launcher): recorded as `killed`, then the process exits."""


# --- small readers ------------------------------------------------------------------------


def read_json(path: Path) -> tuple[Any, str | None]:
    """(parsed JSON, None) or (None, why it could not be read). Never raises."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable ({e})"
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"not valid JSON ({e})"


def _dict_or_none(obj: Any) -> dict[str, Any] | None:
    return obj if isinstance(obj, dict) else None


def check_record(rec: Any) -> str | None:
    """Why `rec` is not a usable completed record, or None when it is."""
    if not isinstance(rec, dict):
        return f"not a JSON object (a {type(rec).__name__})"
    if rec.get("status", "completed") != "completed":
        return f"status is {rec.get('status')!r}, not 'completed'"
    for key, kind in (("task", str), ("model", str), ("scheme", dict), ("final", dict)):
        if not isinstance(rec.get(key), kind):
            return f"{key!r} missing or not a {kind.__name__}"
    if not isinstance(rec.get("seed"), int) or isinstance(rec.get("seed"), bool):
        return "'seed' missing or not an integer"
    if "job_key" in rec and not isinstance(rec["job_key"], str):
        return "'job_key' is not a string"
    metrics = rec["final"].get("metrics")
    primary = metrics.get("val/primary") if isinstance(metrics, dict) else None
    if not isinstance(primary, int | float) or isinstance(primary, bool):
        return "final.metrics has no numeric 'val/primary'"
    if not math.isfinite(primary):
        return f"final.metrics['val/primary'] is {primary}"
    return None


def read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a valid completed record, else (None, why it is corrupt)."""
    rec, why = read_json(path)
    if why is None:
        why = check_record(rec)
    return (rec, None) if why is None else (None, why)


# --- the plan -----------------------------------------------------------------------------


@dataclass
class PlannedJob:
    """One job of a sweep's plan. `dirname` is its directory under the sweep dir."""

    job_key: str
    overrides: list[str]
    dirname: str
    label: str | None = None
    baseline_added: bool = False


def plan_unreadable(error: str) -> str:
    """How status and the report say that a sweep's plan could not be read: why, and what it
    costs (the jobs it planned but never started are nowhere else to be found)."""
    return f"{error} (so the jobs it planned but never started cannot be counted as missing)"


def _plan_error(path: Path, why: str) -> LedgerError:
    return LedgerError(
        f"the sweep plan {path} is damaged: {why}. Delete it and run the same sweep command "
        f"again: the plan is rewritten and completed jobs (their result.json) are kept"
    )


def read_plan(sweep_dir: Path) -> list[PlannedJob] | None:
    """The planned jobs, None when the sweep has no plan (another sweeper, a single run)."""
    path = Path(sweep_dir) / PLAN_FILENAME
    obj, why = read_json(path)
    if why == "missing":
        return None
    if why is not None:
        raise _plan_error(path, why)
    jobs = obj.get("jobs") if isinstance(obj, dict) else None
    if not isinstance(jobs, list):
        raise _plan_error(path, "no 'jobs' list")
    out = []
    for i, j in enumerate(jobs):
        ok = (
            isinstance(j, dict)
            and isinstance(j.get("job_key"), str)
            and isinstance(j.get("overrides"), list)
            and all(isinstance(o, str) for o in j["overrides"])
        )
        if not ok:
            raise _plan_error(path, f"job {i} lacks a job_key string or an overrides list")
        dirname = j.get("dir") or f"{i}_{j['job_key'][:8]}"
        out.append(
            PlannedJob(j["job_key"], j["overrides"], str(dirname), j.get("label"),
                       bool(j.get("baseline_added")))
        )  # fmt: skip
    return out


def job_dirname(index: int, key: str) -> str:
    """A job's directory under the sweep dir: its plan position (sorts like the plan) and key."""
    return f"{index}_{key[:8]}"


def write_plan(sweep_dir: Path, jobs: list[dict[str, Any]]) -> list[PlannedJob]:
    """Merge `jobs` (job_key, overrides, label, baseline_added) into the sweep's plan: jobs
    already planned keep their position and directory, new ones are appended."""
    sweep_dir = Path(sweep_dir)
    with _plan_lock(sweep_dir):
        return _merge_plan(sweep_dir, jobs)


@contextmanager
def _plan_lock(sweep_dir: Path) -> Iterator[None]:
    """Two sweeps started together into one dir merge their plans one after the other."""
    path = Path(sweep_dir) / LOCK_DIRNAME / "plan.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise writable_error(path.parent, e, "hydra.sweep.dir") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def merged_plan(previous: list[PlannedJob], jobs: list[dict[str, Any]]) -> list[PlannedJob]:
    """The plan after adding `jobs` (nothing written): planned jobs keep their position and
    directory, new ones are appended. A dry run shows this; `write_plan` writes it."""
    planned = {j.job_key: j for j in previous}
    for j in jobs:
        if j["job_key"] in planned:
            continue
        planned[j["job_key"]] = PlannedJob(
            j["job_key"],
            list(j["overrides"]),
            job_dirname(len(planned), j["job_key"]),
            j.get("label"),
            bool(j.get("baseline_added")),
        )
    return list(planned.values())


def _merge_plan(sweep_dir: Path, jobs: list[dict[str, Any]]) -> list[PlannedJob]:
    try:
        previous = read_plan(sweep_dir) or []
    except LedgerError as e:
        # The command being run knows its jobs: keep the damaged plan aside, write a new one.
        damaged = sweep_dir / PLAN_FILENAME
        aside = damaged.with_name(f"{PLAN_FILENAME}.damaged.{int(time.time())}")
        damaged.rename(aside)
        print(f"[reinitlab] warning: {e}; moved it to {aside.name}", flush=True)
        previous = []
    out = merged_plan(previous, jobs)
    body = {
        "version": PLAN_VERSION,
        "jobs": [
            {
                "job_key": p.job_key,
                "overrides": p.overrides,
                "dir": p.dirname,
                "label": p.label,
                "baseline_added": p.baseline_added,
            }
            for p in out
        ],
    }
    path = sweep_dir / PLAN_FILENAME
    try:
        write_json_atomic(path, body)
    except OSError as e:
        raise writable_error(path, e, "hydra.sweep.dir") from None
    return out


def writable_error(path: Path, e: OSError, option: str) -> ReinitlabError:
    """The error for a path we cannot write: disk full, or read-only / no permission."""
    if e.errno == errno.ENOSPC:
        return DiskFullError(f"no space left on the device writing {path} ({option})")
    return ReinitlabError(
        f"cannot write {path}: {e.strerror or e}; set {option} to a writable directory"
    )


def check_writable(directory: Path, option: str) -> None:
    """Fail before any training when `directory` cannot be written (read-only, no permission,
    full), naming it and the option that sets it. `~` is the home directory, as for the code
    that writes there later (the default cache is `~/.cache/reinitlab`): taken literally, the
    check left a folder named `~` in the working directory."""
    import tempfile

    directory = Path(directory).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-") as f:
            f.write(b"x")
            f.flush()
    except OSError as e:
        raise writable_error(directory, e, option) from None


# --- leases -------------------------------------------------------------------------------


def lock_path(root: Path, key: str) -> Path:
    """The lock file a live attempt of job `key` holds (flock) for its whole life."""
    return Path(root) / LOCK_DIRNAME / f"{key}.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 probes, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def lock_held(path: Path) -> bool | None:
    """Whether someone holds the flock on `path`; None when it cannot be told (no file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return False


def lease_alive(lease: dict[str, Any], now: float | None = None) -> bool:
    """A lease is live while its lock is held (this host) or its heartbeat is fresh (another
    host, where locks may not be shared)."""
    if lease.get("host") == socket.gethostname():
        pid = lease.get("pid")
        if isinstance(pid, int) and not pid_alive(pid):
            return False
        held = lock_held(Path(lease["lock"])) if lease.get("lock") else None
        return True if held is None else held
    beat = lease.get("heartbeat") or lease.get("started") or 0
    return ((now or time.time()) - float(beat)) < STALE_AFTER_S


# --- the state of every job -----------------------------------------------------------------


@dataclass
class Job:
    """Everything the ledger knows about one job key. `state` is one of STATES; `dir` is the
    directory that decides it (the completed attempt's, else the newest)."""

    key: str
    state: str
    dir: Path | None = None
    overrides: list[str] = field(default_factory=list)
    label: str | None = None
    planned: bool = False
    attempts: int = 0
    dirs: list[Path] = field(default_factory=list)
    record: dict[str, Any] | None = None
    kind: str | None = None  # failed: error | killed | preempted | interrupted
    error: str | None = None
    lease: dict[str, Any] | None = None
    log: str | None = None


@dataclass
class _Attempt:
    """What one directory says about its job."""

    dir: Path
    key: str
    overrides: list[str]
    attempts: int
    record: dict[str, Any] | None
    corrupt: str | None
    lease: dict[str, Any] | None
    failed: dict[str, Any] | None
    mtime: float


def _hydra_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    from omegaconf import OmegaConf

    try:
        return [str(x) for x in OmegaConf.load(path)]
    except Exception:  # noqa: BLE001 -- a damaged Hydra file only loses the overrides
        return []


def natural_key(path: Path | None) -> tuple:
    """Sort key that orders job dirs as numbers (`2_ab`, `10_cd`; Hydra's `2`, `10`), not
    as text (`10` before `2`)."""
    if path is None:
        return ((1, ""),)
    return tuple(
        (0, int(tok), "") if tok.isdigit() else (1, 0, tok)
        for part in Path(path).parts
        for tok in re.split(r"(\d+)", part)
        if tok
    )


JOB_MARKERS = frozenset({JOB_FILENAME, RESULT_FILENAME, RUNNING_FILENAME, FAILED_FILENAME})


def _job_dirs(root: Path) -> list[Path]:
    """Directories under (and including) `root` that hold a job: a Hydra job dir or any of
    the ledger's per-job files."""
    return [d for d, _ in _walk_jobs(root)]


def _walk_jobs(root: Path) -> list[tuple[Path, frozenset[str]]]:
    """(job dir, the ledger files it holds) under `root`, in job order. One walk, each
    directory listed once: a study of ten thousand jobs is read in one pass, not once per kind
    of file, and files a directory does not hold are never opened."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if LOCK_DIRNAME in dirnames:
            dirnames.remove(LOCK_DIRNAME)
        held = JOB_MARKERS.intersection(filenames)
        if ".hydra" in dirnames or held:
            found.append((Path(dirpath), frozenset(held)))
    return sorted(found, key=lambda item: natural_key(item[0]))


def _fallback_key(job_dir: Path, record: dict[str, Any] | None, overrides: list[str]) -> str:
    """The identity of a job not written by a reinitlab job (no job key): what its record
    says was computed, else its Hydra overrides, else its directory."""
    import hashlib

    if record is not None:
        config = {
            k: v for k, v in (record.get("config") or {}).items() if k not in ("paths", "hydra")
        }
        what = [record.get(k) for k in ("task", "model", "scheme", "seed", "seeds")]
        blob = json.dumps([what, config], sort_keys=True, default=str)
        return "record:" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    if overrides:
        return "overrides:" + " ".join(sorted(overrides))
    return f"dir:{job_dir}"


def _read_attempt(job_dir: Path, held: frozenset[str] | None = None) -> _Attempt:
    """What `job_dir` says about its job; `held`: the ledger files it holds, when known (the
    others are not opened)."""

    def read(name: str) -> tuple[Any, str | None]:
        return read_json(job_dir / name) if held is None or name in held else (None, "missing")

    info, _ = read(JOB_FILENAME)
    info = info if isinstance(info, dict) else {}
    record = corrupt = None
    raw, why = read(RESULT_FILENAME)  # read once: it decides both the state and the key
    if why != "missing":
        corrupt = why or check_record(raw)
        record = raw if corrupt is None else None
    overrides = info.get("overrides")
    if not isinstance(overrides, list):
        overrides = _hydra_overrides(job_dir)
    key = info.get("job_key")
    if not isinstance(key, str):
        key = raw.get("job_key") if isinstance(raw, dict) else None
    if not isinstance(key, str):
        key = _fallback_key(job_dir, record, overrides)
    attempts = info.get("attempts")
    try:
        mtime = job_dir.stat().st_mtime
    except OSError:
        mtime = 0.0
    return _Attempt(
        dir=job_dir,
        key=key,
        overrides=[str(o) for o in overrides],
        attempts=attempts if isinstance(attempts, int) else 1,
        record=record,
        corrupt=corrupt,
        lease=_dict_or_none(read(RUNNING_FILENAME)[0]),
        failed=_dict_or_none(read(FAILED_FILENAME)[0]),
        mtime=mtime,
    )


def last_log_line(job_dir: Path) -> str | None:
    """The last line of the job's Hydra log that reads like an error, else its last line."""
    for log in sorted(Path(job_dir).glob("*.log")):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "[ERROR]" in ln or "Error" in ln or "Traceback" in ln]
        if errors:
            return errors[-1]
        if lines:
            return lines[-1]
    return None


def _decide(key: str, attempts: list[_Attempt]) -> Job:
    """One job from all its directories: completed beats running beats corrupt beats failed."""
    newest = sorted(attempts, key=lambda a: a.mtime)
    job = Job(key, "failed", attempts=sum(a.attempts for a in attempts))
    job.dirs = [a.dir for a in attempts]
    job.overrides = next((a.overrides for a in newest[::-1] if a.overrides), [])
    done = [a for a in newest if a.record is not None]
    live = [a for a in newest if a.lease is not None and lease_alive(a.lease)]
    if done:
        a = done[0]  # duplicates of a completed job are never extra samples: the first counts
        job.state, job.dir, job.record = "completed", a.dir, a.record
        return job
    if live:
        a = live[-1]
        job.state, job.dir, job.lease = "running", a.dir, a.lease
        return job
    a = newest[-1]
    job.dir = a.dir
    corrupt = [x for x in newest if x.corrupt is not None]
    if corrupt:
        c = corrupt[-1]
        job.state, job.dir = "corrupt", c.dir
        job.error = f"{c.dir / RESULT_FILENAME}: {c.corrupt}"
        return job
    if a.lease is not None:
        job.kind = "killed"
        job.error = (
            f"process {a.lease.get('pid')} on {a.lease.get('host')} ended without a result "
            "(killed, or out of memory?)"
        )
    elif a.failed is not None:
        kind = a.failed.get("kind")
        job.kind = kind if kind in FAILURE_KINDS else "error"
        job.error = str(a.failed.get("error"))
    else:
        job.kind = "error"
        job.error = "no result and no marker (killed before it could write one?)"
    job.log = last_log_line(a.dir)
    return job


class Ledger:
    """The state of every job under `root` (a sweep dir, a run dir, or a folder of them)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ReinitlabError(f"{str(self.root)!r} is not a directory")
        self.plan_error: str | None = None  # a damaged plan: said, never a crash
        try:
            self.plan = read_plan(self.root)
        except LedgerError as e:
            self.plan, self.plan_error = None, str(e)
        self.jobs = self._read()
        self._by_key: dict[str, Job] = {}

    def _read(self) -> list[Job]:
        by_key: dict[str, list[_Attempt]] = {}
        for d, held in _walk_jobs(self.root):
            a = _read_attempt(d, held)
            by_key.setdefault(a.key, []).append(a)
        jobs: dict[str, Job] = {k: _decide(k, v) for k, v in by_key.items()}
        ordered: list[Job] = []
        for p in self.plan or []:
            job = jobs.pop(p.job_key, None) or Job(p.job_key, "missing", overrides=p.overrides)
            job.planned, job.label = True, p.label
            job.overrides = p.overrides
            ordered.append(job)
        return ordered + sorted(jobs.values(), key=lambda j: natural_key(j.dir))

    def job(self, key: str) -> Job | None:
        """The job with this key, or None when the ledger has never seen it."""
        if len(self._by_key) != len(self.jobs):
            self._by_key = {j.key: j for j in self.jobs}
        return self._by_key.get(key)

    def by_state(self, state: str) -> list[Job]:
        """The jobs in one of STATES, in plan order."""
        return [j for j in self.jobs if j.state == state]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state: the numbers status, the sweeper and the report share."""
        return {s: len(self.by_state(s)) for s in STATES}

    @property
    def plan_problem(self) -> str | None:
        """A damaged plan in the words `status` and the report both print (never counted as a
        corrupt job: it is no job), None when the plan is readable or absent."""
        return None if self.plan_error is None else plan_unreadable(self.plan_error)

    def require_jobs(self, command: str) -> None:
        """Refuse a directory that holds no job at all (no plan, no job directory, no result
        record): an empty or wrong folder, not a sweep with zero jobs."""
        if self.jobs or self.plan_error is not None:
            return
        what = (
            "it is empty"
            if not any(self.root.iterdir())
            else f"it holds no {PLAN_FILENAME}, no Hydra job dirs and no result records "
            f"({RESULT_FILENAME})"
        )
        raise ReinitlabError(
            f"{command}: {str(self.root)!r} is not a sweep directory: {what}; give a sweep dir "
            "such as multirun/<date>_<id> (hydra.sweep.dir) or a run dir"
        )

    @property
    def planned(self) -> int | None:
        """How many jobs the plan has, None without a (readable) plan."""
        return None if self.plan is None else len(self.plan)

    def records(self) -> Iterator[tuple[Job, dict[str, Any]]]:
        """(job, record) of every completed job: one record per job, never a duplicate."""
        for j in self.jobs:
            if j.record is not None:
                yield j, j.record


# --- one attempt of a job -------------------------------------------------------------------


# Set by the job's SIGINT handler: Lightning turns Ctrl-C into `SystemExit(1)` after its own
# graceful shutdown, so the exception alone cannot tell an interrupt from an error.
INTERRUPTED = threading.Event()


def failure_kind(exc: BaseException) -> str:
    """How an attempt ended, from its exception: preempted, interrupted, killed or error."""
    if isinstance(exc, PreemptedError) or os.environ.get("REINITLAB_PREEMPTED") == "1":
        return "preempted"
    if isinstance(exc, KeyboardInterrupt) or INTERRUPTED.is_set():
        return "interrupted"
    if isinstance(exc, Terminated):
        return "killed"
    return "error"


def error_line(exc: BaseException) -> str:
    """The exception's last line (`Type: message`), as shown in status and the report."""
    if isinstance(exc, KeyboardInterrupt) or INTERRUPTED.is_set():
        return "interrupted (Ctrl-C)"
    lines = traceback.format_exception_only(type(exc), exc)
    return (lines[-1] if lines else repr(exc)).strip()


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a full disk."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 10:
        if isinstance(e, DiskFullError) or (isinstance(e, OSError) and e.errno == errno.ENOSPC):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


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
class Skip:
    """Why a job does not run now: `completed` (its record) or `running` (a live lease)."""

    reason: str
    job: Job


class Attempt:
    """A claimed attempt: holds the job's lock and lease until `complete` or `fail`."""

    def __init__(self, root: Path, key: str, output_dir: Path, overrides: list[str], fd: int):
        self.root, self.key, self.output_dir = Path(root), key, Path(output_dir)
        self.overrides = overrides
        self._fd: int | None = fd
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lease: dict[str, Any] = {}

    def start(self, attempts: int) -> None:
        """Write job.json and the lease, clear the previous attempt's markers, start beating."""
        out = self.output_dir
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                out / JOB_FILENAME,
                {"job_key": self.key, "overrides": self.overrides, "attempts": attempts},
            )
            now = time.time()
            self.lease = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": now,
                "heartbeat": now,
                "lock": str(lock_path(self.root, self.key)),
                "slurm_job_id": slurm_job_id(),
            }
            write_json_atomic(out / RUNNING_FILENAME, self.lease)
            (out / FAILED_FILENAME).unlink(missing_ok=True)
            result = out / RESULT_FILENAME
            if result.exists() and read_record(result)[0] is None:
                result.rename(out / f"result.corrupt.{int(now)}.json")  # kept for inspection
        except OSError as e:
            self.release()
            raise writable_error(out, e, "hydra.sweep.dir / hydra.run.dir") from e
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="ledger-beat")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.lease["heartbeat"] = time.time()
            # (a failed write is harmless: the lock says we are alive on this host)
            with suppress(OSError):
                write_json_atomic(self.output_dir / RUNNING_FILENAME, self.lease)

    def complete(self) -> None:
        """The record is written: end the lease."""
        self._stop.set()
        (self.output_dir / RUNNING_FILENAME).unlink(missing_ok=True)
        self.release()

    def fail(self, exc: BaseException) -> str | None:
        """Record how the attempt failed; returns why recording failed, if it did (the caller
        then shows the job's own error all the same)."""
        self._stop.set()
        problem = None
        path = self.output_dir / FAILED_FILENAME
        try:
            write_json_atomic(
                path,
                {
                    "job_key": self.key,
                    "kind": failure_kind(exc),
                    "error": error_line(exc),
                    "error_type": type(exc).__name__,
                    "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)[
                        -12:
                    ],
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "time": time.time(),
                },
            )
        except OSError as e:
            problem = f"could not record the failure in {path}: {e}"
        try:
            (self.output_dir / RUNNING_FILENAME).unlink(missing_ok=True)
        except OSError as e:
            problem = problem or f"could not remove {self.output_dir / RUNNING_FILENAME}: {e}"
        self.release()
        return problem

    def release(self) -> None:
        """Drop the job's lock (the OS does it too when the process dies) and stop beating."""
        self._stop.set()
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None


def _index_path(root: Path, key: str) -> Path:
    return Path(root) / LOCK_DIRNAME / f"{key}.dirs"


def key_dirs(root: Path, key: str, output_dir: Path) -> list[Path]:
    """The directories that may hold attempts of job `key`: `output_dir` and every directory an
    attempt of the key was ever started in (`<sweep>/.locks/<key>.dirs`, one per line). Under
    reinitlab's sweeper (a sweep with a plan) that is all of them, so a claim or a resume reads
    its own job and nothing else, however large the sweep. A sweep dir without a plan (another
    sweeper, or a single run dir) is walked whole, as it may hold twins numbered anyhow."""
    root, output_dir = Path(root), Path(output_dir)
    if not (root / PLAN_FILENAME).is_file():
        return _job_dirs(root) if root.is_dir() else []
    dirs = [output_dir]
    with suppress(OSError):
        for line in _index_path(root, key).read_text().splitlines():
            d = root / line  # (relative to the sweep: a copied or moved sweep reads itself)
            if line and d not in dirs and d.is_dir():
                dirs.append(d)
    return dirs


def read_job(root: Path, key: str, output_dir: Path) -> Job | None:
    """What the ledger knows about job `key`, read from its own directories only
    (`key_dirs`): the same answer as `Ledger(root).job(key)` for a job of a planned sweep."""
    dirs = sorted((d for d in key_dirs(root, key, output_dir) if d.is_dir()), key=natural_key)
    attempts = [a for a in map(_read_attempt, dirs) if a.key == key]
    return _decide(key, attempts) if attempts else None


def _index(root: Path, key: str, output_dir: Path) -> None:
    """Add `output_dir` to the key's directories (under the key's lock, so no two writers)."""
    path = _index_path(root, key)
    output_dir = Path(output_dir)
    try:
        line = str(output_dir.relative_to(root))  # a copied or moved sweep keeps its list
    except ValueError:
        line = str(output_dir.absolute())
    try:
        known = path.read_text().splitlines() if path.is_file() else []
        if line not in known:
            with path.open("a") as f:
                f.write(line + "\n")
    except OSError as e:
        raise writable_error(path.parent, e, "hydra.sweep.dir / hydra.run.dir") from e


def claim(root: Path, key: str, output_dir: Path, overrides: list[str]) -> Attempt | Skip:
    """Start an attempt of job `key` in `output_dir`, or say why not (completed, or a live
    attempt elsewhere). Safe when two sweeps or launchers start the same job together: the
    key's lock decides, and the state is read again once it is held."""
    root = Path(root)
    path = lock_path(root, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise writable_error(path.parent, e, "hydra.sweep.dir / hydra.run.dir") from e
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                job = read_job(root, key, output_dir) or Job(key, "running")
                if job.state != "completed":
                    job.state = "running"
                return Skip(job.state, job)
            time.sleep(0.05)
    job = read_job(root, key, output_dir)
    ours = job is not None and (job.lease or {}).get("host") == socket.gethostname()
    if job is not None and (job.state == "completed" or (job.state == "running" and not ours)):
        # (a lease from this host is stale once we hold its lock: its process is gone)
        os.close(fd)
        return Skip(job.state, job)
    attempt = Attempt(root, key, output_dir, overrides, fd)
    try:
        _index(root, key, output_dir)
    except ReinitlabError:
        attempt.release()
        raise
    attempt.start((job.attempts if job is not None else 0) + 1)
    return attempt
