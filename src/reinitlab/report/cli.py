"""`reinitlab report SWEEP_DIR [SWEEP_DIR ...] --out DIR`: tables, figures and report.html."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sweep dirs, output dir, compared metric, bootstrap size and seed, and the W&B options."""
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="SWEEP_DIR",
        help="sweep dirs (multirun/<sweep>) or run dirs holding result.json files",
    )
    parser.add_argument(
        "--out", default=None, help="output dir (default: <first SWEEP_DIR>/report)"
    )
    parser.add_argument(
        "--metric",
        choices=["auto", "final", "best"],
        default="auto",
        help="which validation to compare: final, best, or auto = best for runs "
        "trained with early stopping, else final (default)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=10_000,
        metavar="N",
        help="bootstrap resamples for the 95%% CIs (default 10000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log the tables and figures as one W&B run (job_type=report) in the "
        "sweep's group; offline unless --wandb-online",
    )
    parser.add_argument("--wandb-online", action="store_true", help="log the W&B run online")
    parser.add_argument(
        "--wandb-project",
        default=None,
        help="W&B project (default: the records' logger.project, else reinitlab)",
    )


# problems of one kind printed to the console: a study in progress has hundreds of jobs
# planned but not yet started, which would bury the summary; problems.csv lists them all
PROBLEMS_SHOWN = 10


def run(args: argparse.Namespace) -> int:
    """`reinitlab report`: build the report, print the unusable jobs (the first few of each
    kind) and the notes to stderr and a one-line summary; returns 0 (a report with failed jobs is still a report)."""
    from reinitlab.errors import ReinitlabError
    from reinitlab.report.build import build_report

    if args.bootstrap < 100:
        raise ReinitlabError(f"report: --bootstrap={args.bootstrap}; use at least 100 resamples")
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "report"
    report = build_report(
        args.dirs, out, metric=args.metric, n_resamples=args.bootstrap, seed=args.seed
    )
    shown: dict[str, int] = {}
    for p in report.collection.problems:
        shown[p.kind] = shown.get(p.kind, 0) + 1
        if shown[p.kind] > PROBLEMS_SHOWN:
            continue
        what = " ".join(p.overrides)
        where = "" if p.kind == "plan" else f" {p.where} {what}:"  # the plan's reason names it
        print(f"reinitlab report: {p.kind}:{where} {p.reason}", file=sys.stderr)
    for kind, n in shown.items():
        if n > PROBLEMS_SHOWN:
            print(
                f"reinitlab report: {kind}: {n - PROBLEMS_SHOWN} more {kind} job(s) not shown; "
                f"all {n} in {out / 'problems.csv'}",
                file=sys.stderr,
            )
    for note in report.notes:
        print(f"reinitlab report: note: {note}", file=sys.stderr)
    kinds = {
        k: sum(p.kind == k for p in report.collection.problems)
        for k in ("failed", "missing", "corrupt", "running", "plan")
    }
    missing = f"{kinds['missing']} missing"
    if kinds["plan"]:
        missing += f" (not counted in {kinds['plan']} sweep(s) whose plan could not be read)"
    print(
        f"[reinitlab] report: {len(report.collection.records)} runs done, {kinds['failed']} failed, "
        f"{missing}, {kinds['corrupt']} corrupt, {kinds['running']} running; "
        f"{len(report.figures)} figures "
        f"-> {out / 'report.html'}"
    )
    if args.wandb or args.wandb_online:
        from reinitlab.report.wandb_summary import log_summary

        run_dir = log_summary(report, online=args.wandb_online, project=args.wandb_project)
        import wandb

        wandb.teardown()  # stop wandb's service: the run file is complete when we return
        print(f"[reinitlab] report: W&B summary run in {run_dir}")
    return 0
