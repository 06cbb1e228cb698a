"""`reinitlab status SWEEP_DIR`: how far a sweep got, as the sweep ledger sees it.

The counts (completed, failed, missing, running, corrupt) are the ledger's, so they are the
same numbers the sweeper skips by and the report aggregates. Jobs are listed in plan order
(the order of their directory numbers), never as text-sorted paths.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reinitlab.decide.study import format_decisions, read_decisions
from reinitlab.sweep.ledger import STATES, Job, Ledger


def sweep_status(sweep_dir: Path) -> Ledger:
    """The ledger of `sweep_dir` (its `counts()`, `jobs`, `by_state(...)`)."""
    return Ledger(sweep_dir)


def _job_line(job: Job) -> str:
    where = str(job.dir) if job.dir is not None else "(no directory yet)"
    attempts = f"  [attempts {job.attempts}]" if job.attempts > 1 else ""
    return f"  {where}  {' '.join(job.overrides)}{attempts}"


def format_status(sweep_dir: Path, ledger: Ledger) -> str:
    """The text `reinitlab status` prints: counts, then each failed, corrupt, running and
    missing job with its reason."""
    c = ledger.counts()
    planned = "" if ledger.planned is None else f" | planned {ledger.planned}"
    # while jobs run, a planned job not started yet is waiting its turn, not lost
    names = {s: s for s in STATES}
    if c["running"]:
        names["missing"] = "queued"
    lines = [f"sweep {sweep_dir}", " | ".join(f"{names[s]} {c[s]}" for s in STATES) + planned]
    if ledger.plan_problem:
        lines.append(f"plan: {ledger.plan_problem}")
    now = time.time()
    for state in ("failed", "corrupt", "running", "missing"):
        jobs = ledger.by_state(state)
        if not jobs:
            continue
        lines.append(
            "queued (not started yet; the sweep is still running):"
            if names[state] == "queued"
            else f"{state}:"
        )
        for job in jobs:
            lines.append(_job_line(job))
            if state == "failed":
                lines.append(f"    {job.kind}: {job.error}")
                if job.log and job.error and job.error not in job.log:
                    lines.append(f"    log: {job.log}")
            elif state == "corrupt":
                lines.append(f"    {job.error}")
            elif state == "running":
                lease = job.lease or {}
                age = now - float(lease.get("started") or now)
                lines.append(
                    f"    pid {lease.get('pid')} on {lease.get('host')}, for {age / 60:.0f} min"
                )
    decisions = read_decisions(sweep_dir)
    if decisions:
        lines += ["decisions (adaptive seeds):", format_decisions(decisions)]
    return "\n".join(lines)


def job_row(job: Job) -> dict[str, str]:
    """One job as the results table shows it: task, label, seed, primary metric, time, state
    (numbers from its record, the same ones the report reads; a job without a record shows
    its planned label)."""
    rec = job.record or {}
    scheme = rec.get("scheme") or {}
    label = scheme.get("label") or job.label or " ".join(job.overrides)
    task, seed = rec.get("task", ""), rec.get("seed", "")
    metric = value = time_s = ""
    if rec:
        metric = rec.get("primary_metric", "")
        value = f"{rec['final']['metrics']['val/primary']:.4f}"
        time_s = f"{rec.get('wall_time_s', 0):.0f}s"
    state = job.state if job.state != "failed" else f"failed ({job.kind})"
    return {"task": str(task), "label": str(label), "seed": str(seed), "metric": metric,
            "value": value, "time": time_s, "state": state}  # fmt: skip


def results_table(ledger: Ledger, keys: list[str] | None = None) -> str:
    """The sweep's results as a fixed-width table, one row per job in plan order (only the
    jobs in `keys` when given): what a sweep prints when it ends."""
    wanted = None if keys is None else set(keys)
    jobs = [j for j in ledger.jobs if wanted is None or j.key in wanted]
    rows = [job_row(j) for j in jobs]
    header = {"task": "task", "label": "label", "seed": "seed", "metric": "metric",
              "value": "final", "time": "time", "state": "state"}  # fmt: skip
    widths = {k: max(len(r[k]) for r in [header, *rows]) for k in header}
    right = {"seed", "value", "time"}

    def line(r: dict[str, str]) -> str:
        cells = [r[k].rjust(widths[k]) if k in right else r[k].ljust(widths[k]) for k in header]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def as_json(ledger: Ledger) -> dict:
    """Everything `format_status` shows, as JSON (`reinitlab status --json`)."""
    decisions = read_decisions(ledger.root)
    return {
        "decisions": None if decisions is None else [d.as_dict() for d in decisions],
        "counts": ledger.counts(),
        "planned": ledger.planned,
        "plan_error": ledger.plan_error,
        "jobs": [
            {
                "job_key": j.key,
                "state": j.state,
                "dir": None if j.dir is None else str(j.dir),
                "overrides": j.overrides,
                "attempts": j.attempts,
                "kind": j.kind,
                "error": j.error,
                "lease": j.lease,
            }
            for j in ledger.jobs
        ],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `reinitlab status` command line."""
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (hydra.sweep.dir)")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace) -> int:
    """`reinitlab status SWEEP_DIR [--json]`."""
    ledger = sweep_status(args.sweep_dir)
    ledger.require_jobs("status")
    if args.json:
        print(json.dumps(as_json(ledger), indent=2))
    else:
        print(format_status(args.sweep_dir, ledger))
    return 0
