"""`reinitlab status SWEEP_DIR`: how far a sweep got -- done, failed, missing, running.

A job counts once per identity (`job_key`), whatever directory it ran in: done if any
directory holds its completed record, else running if a live process holds its running
marker, else failed (a failed marker, or a running marker whose process is gone). Missing jobs
are the ones the sweep planned (`sweep_plan.json`, written by reinitlab's sweeper) that have
no directory at all yet.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reinitlab.errors import ReinitlabError
from reinitlab.jobstate import (
    FAILED_FILENAME,
    JOB_FILENAME,
    RUNNING_FILENAME,
    completed_records,
    read_json,
)

PLAN_FILENAME = "sweep_plan.json"


@dataclass
class SweepStatus:
    done: dict[str, str] = field(default_factory=dict)  # key -> job dir
    failed: dict[str, dict] = field(default_factory=dict)  # key -> {dir, error, overrides}
    running: dict[str, dict] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # key -> overrides
    planned: int | None = None

    def counts(self) -> dict[str, int]:
        return {
            "done": len(self.done),
            "failed": len(self.failed),
            "missing": len(self.missing),
            "running": len(self.running),
        }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_log_line(job_dir: Path) -> str | None:
    """The last non-empty line of the job's Hydra log (`<job name>.log`)."""
    for log in sorted(job_dir.glob("*.log")):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return None


def sweep_status(sweep_dir: Path) -> SweepStatus:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReinitlabError(f"sweep directory {str(sweep_dir)!r} does not exist")
    st = SweepStatus()
    for path, rec in completed_records(sweep_dir):
        st.done.setdefault(rec.get("job_key") or str(path.parent), str(path.parent))
    host = socket.gethostname()
    for job_file in sorted(sweep_dir.rglob(JOB_FILENAME)):
        job_dir = job_file.parent
        info = read_json(job_file) or {}
        key = info.get("job_key") or str(job_dir)
        if key in st.done:
            continue
        entry = {"dir": str(job_dir), "overrides": info.get("overrides", [])}
        running = read_json(job_dir / RUNNING_FILENAME)
        failed = read_json(job_dir / FAILED_FILENAME)
        if running is not None:
            stale = running.get("host") == host and not pid_alive(int(running.get("pid", -1)))
            if not stale:
                st.running[key] = {**entry, **running}
                st.failed.pop(key, None)
                continue
            failed = {
                "error": f"process {running.get('pid')} on {host} is gone without a result "
                "(killed?)",
                "kind": "stale",
            }
        if key in st.running:
            continue
        if failed is None:
            failed = {"error": "no result and no marker (killed before it could write one?)"}
        st.failed[key] = {
            **entry,
            "error": failed.get("error"),
            "kind": failed.get("kind", "error"),
            "log": last_log_line(job_dir),
        }
    plan = read_json(sweep_dir / PLAN_FILENAME)
    if plan is not None:
        st.planned = len(plan["jobs"])
        seen = set(st.done) | set(st.failed) | set(st.running)
        for job in plan["jobs"]:
            if job["job_key"] not in seen:
                st.missing[job["job_key"]] = job["overrides"]
    return st


def format_status(sweep_dir: Path, st: SweepStatus) -> str:
    c = st.counts()
    lines = [
        f"sweep {sweep_dir}",
        f"done {c['done']} | failed {c['failed']} | missing {c['missing']} | "
        f"running {c['running']}" + ("" if st.planned is None else f" | planned {st.planned}"),
    ]
    if st.failed:
        lines.append("failed:")
        for info in st.failed.values():
            lines.append(f"  {info['dir']}  {' '.join(info['overrides'])}")
            lines.append(f"    {info['error']}")
            log_line = info.get("log")
            if log_line and info["error"] and info["error"] not in log_line:
                lines.append(f"    log: {log_line}")
    if st.running:
        lines.append("running:")
        for info in st.running.values():
            lines.append(f"  {info['dir']}  pid {info.get('pid')} on {info.get('host')}")
    if st.missing:
        lines.append("missing:")
        for overrides in st.missing.values():
            lines.append(f"  {' '.join(overrides)}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (hydra.sweep.dir)")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace) -> int:
    st = sweep_status(args.sweep_dir)
    if args.json:
        print(json.dumps({"counts": st.counts(), **asdict(st)}, indent=2))
    else:
        print(format_status(args.sweep_dir, st))
    return 0
