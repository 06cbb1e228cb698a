"""reinitlab's own bookkeeping as a study grows: planning, claiming, status and report.

    python bench/bench_scale.py [--quick] [--dry-sizes 100 1000 10000]
                                [--claim-sizes 100 1000 10000] [--status-sizes 1000 10000]
                                [--out results]

Measured side by side in one run on this machine (model=tiny; nothing is trained):

- dry run: `train.py -m task=rte reinit.k=1,2,3 seed=range(0,N/4) hydra.sweeper.dry_run=true`
  (N/4 baselines added: N jobs), wall time of the whole command, per job;
- the anchor: Hydra composing each job from scratch (`load_sweep_config`, what the sweeper did
  before) -- timed on a sample of jobs of the same sweep and extrapolated per job (said so in
  the table);
- claim: `ledger.claim` of a new job in a synthetic finished sweep of N jobs (interleaved
  across sizes, median of repeats);
- status (`Ledger` + `format_status`) and report (`build_report`) on N completed records
  (tests/helpers/finished_sweep.py writes them with the ledger's and the record's writers).

`--quick` skips the 10,000-job dry run (about an hour here at the old per-job cost).
Writes <out>/bench_scale.json and <out>/bench_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

SWEEP = ["task=rte", "model=tiny", "logger=none", "reinit.k=1,2,3"]


def dry_run(n_jobs: int, work: Path) -> dict:
    """Wall time of a dry run of n_jobs jobs (3 schemes x seeds, plus one baseline per seed)."""
    seeds = max(1, n_jobs // 4)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    cmd = [sys.executable, str(REPO / "train.py"), "-m", *SWEEP, f"seed=range(0,{seeds})",
           "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={work / f'dry{n_jobs}'}"]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, check=True)
    wall = time.perf_counter() - start
    listed = sum(1 for line in out.stdout.splitlines() if line.startswith("  ") and "_" in line)
    return {"jobs": listed, "wall_s": wall, "per_job_ms": 1000 * wall / max(listed, 1)}


def hydra_per_job(sample: int, work: Path) -> dict:
    """Hydra's own composition of one job, timed on `sample` jobs of the same sweep."""
    from hydra import compose, initialize_config_dir

    from hydra_plugins.reinitlab_plugins.composer import JobComposer
    from reinitlab.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        from hydra.core.global_hydra import GlobalHydra

        master = compose("train", overrides=[f"hydra.sweep.dir={work}/anchor"],
                         return_hydra_config=True)  # fmt: skip
        composer = JobComposer(GlobalHydra.instance().config_loader(), master)
        jobs = [["task=rte", "model=tiny", "logger=none", f"reinit.k={1 + i % 3}", f"seed={i}"]
                for i in range(sample)]  # fmt: skip
        start = time.perf_counter()
        for overrides in jobs:
            composer.hydra_compose(overrides)
        hydra_s = (time.perf_counter() - start) / sample
        start = time.perf_counter()
        for overrides in jobs:
            composer.compose(overrides)
        merged_s = (time.perf_counter() - start) / sample
    return {"sample": sample, "hydra_ms": 1000 * hydra_s, "composer_ms": 1000 * merged_s}


def claim_cost(sweeps: dict[int, Path], repeats: int) -> dict[int, float]:
    """Median seconds of one claim (and its completion) of a new job, per sweep size."""
    from reinitlab.sweep.ledger import claim

    times: dict[int, list[float]] = {n: [] for n in sweeps}
    for r in range(repeats):
        for n, sweep in sweeps.items():  # interleaved: the machine is noisy
            key = f"{r:08x}beefcafe"
            start = time.perf_counter()
            attempt = claim(sweep, key, sweep / f"new_{r}", ["seed=0"])
            attempt.complete()
            times[n].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


def status_and_report(sweep: Path, work: Path) -> dict:
    from reinitlab.report.build import build_report
    from reinitlab.sweep.ledger import Ledger
    from reinitlab.sweep.status import format_status

    start = time.perf_counter()
    format_status(sweep, Ledger(sweep))
    status_s = time.perf_counter() - start
    start = time.perf_counter()
    build_report([sweep], work / f"report_{sweep.name}", n_resamples=200, seed=0)
    return {"status_s": status_s, "report_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dry-sizes", type=int, nargs="*")
    parser.add_argument("--claim-sizes", type=int, nargs="*", default=[100, 1000, 10000])
    parser.add_argument("--status-sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--anchor-sample", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=REPO / "results")
    args = parser.parse_args()
    dry_sizes = args.dry_sizes or ([100, 1000] if args.quick else [100, 1000, 10000])
    from tests.helpers.finished_sweep import make_finished_sweep

    results: dict = {"dry_run": {}, "claim_s": {}, "status": {}}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        results["anchor"] = hydra_per_job(args.anchor_sample, work)
        for n in dry_sizes:
            results["dry_run"][n] = dry_run(n, work)
            print(f"dry run {n}: {results['dry_run'][n]}", flush=True)
        sizes = sorted(set(args.claim_sizes) | set(args.status_sizes))
        sweeps = {n: make_finished_sweep(work / f"finished{n}", n) for n in sizes}
        claim = claim_cost({n: sweeps[n] for n in args.claim_sizes}, args.repeats)
        results["claim_s"] = claim
        for n in args.status_sizes:
            results["status"][n] = status_and_report(sweeps[n], work)
            print(f"status/report {n}: {results['status'][n]}", flush=True)
    anchor = results["anchor"]
    lines = [
        "| what | size | result |",
        "|---|---|---|",
        f"| Hydra composing one job (anchor; {anchor['sample']} jobs timed, extrapolated) | "
        f"per job | {anchor['hydra_ms']:.1f} ms |",
        f"| the sweeper's composer, same jobs | per job | {anchor['composer_ms']:.1f} ms |",
    ]
    for d in results["dry_run"].values():
        extrapolated = anchor["hydra_ms"] * d["jobs"] / 1000
        lines.append(
            f"| dry run (whole command) | {d['jobs']} jobs | {d['wall_s']:.1f} s "
            f"({d['per_job_ms']:.1f} ms/job; Hydra's composition alone, extrapolated: "
            f"{extrapolated:.0f} s) |"
        )
    small = min(claim) if claim else None
    for n, t in claim.items():
        ratio = f" ({t / claim[small]:.2f}x of {small})" if small else ""
        lines.append(f"| claim of one job | {n} jobs in the dir | {1000 * t:.2f} ms{ratio} |")
    for n, s in results["status"].items():
        lines.append(f"| status | {n} records | {s['status_s']:.2f} s |")
        lines.append(f"| report | {n} records | {s['report_s']:.1f} s |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_scale.json").write_text(json.dumps(results, indent=2))
    (args.out / "bench_scale.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
