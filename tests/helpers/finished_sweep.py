"""Synthetic finished sweeps of any size: the plan, each job's `job.json` and its completed
record, written by the ledger's and the record's own writers, so `status`, the report and a
claim see exactly what a real sweep of that many jobs leaves (without training anything).

Used by the ledger's scale tests and by bench/bench_scale.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from reinitlab.atomic import write_json_atomic
from reinitlab.sweep.ledger import JOB_FILENAME, write_plan
from reinitlab.training.record import write_result

LAYERS = 3  # of the synthetic model (model=tiny)


def synthetic_key(i: int) -> str:
    """A job key as `reinitlab.sweep.jobkey` makes them (hex digest), unique per job."""
    return hashlib.sha256(f"synthetic-{i}".encode()).hexdigest()[:16]


def job_overrides(i: int, seeds: int) -> list[str]:
    """Job i of the study: reinit.k in 1..L+1 (L+1 the baseline) times `seeds` seeds."""
    return ["task=rte", f"reinit.k={1 + (i // seeds) % (LAYERS + 1)}", f"seed={i % seeds}"]


def synthetic_record(i: int, key: str, seeds: int) -> dict:
    """A completed record with the fields the report reads, a known metric per (k, seed)."""
    k, seed = 1 + (i // seeds) % (LAYERS + 1), i % seeds
    value = round(0.6 - 0.05 * (LAYERS + 1 - k) + 0.001 * (seed % 7), 6)
    val = {"epoch": 0, "step": 2, "metrics": {"val/mcc": value, "val/primary": value}}
    label = "baseline" if k == LAYERS + 1 else f"k={k}"
    return {
        "status": "completed",
        "job_key": key,
        "task": "rte",
        "model": "tiny",
        "num_layers": LAYERS,
        "scheme": {"name": "progressive", "k": k, "pooler": False, "label": label},
        "seed": seed,
        "seeds": {"train": seed, "reinit": seed, "subset": seed},
        "primary_metric": "mcc",
        "train_size": 2490,
        "max_train_samples": None,
        "final": val,
        "best": val,
        "history": [val],
        "steps": 2,
        "wall_time_s": 1.5,
        "config": {"seed": seed, "trainer": {"max_epochs": 1}, "optim": {"lr": 2e-5}},
    }


def make_finished_sweep(sweep: Path, n_jobs: int, seeds: int | None = None) -> Path:
    """A sweep dir of `n_jobs` completed jobs (planned by the ledger, each in its own
    `<index>_<key>` dir with job.json and result.json). `seeds` defaults to n_jobs / 4, so the
    study is 4 schemes (k=1..3 and the baseline) times its seeds."""
    sweep = Path(sweep)
    seeds = seeds or max(1, n_jobs // (LAYERS + 1))
    jobs = [
        {"job_key": synthetic_key(i), "overrides": job_overrides(i, seeds), "label": None}
        for i in range(n_jobs)
    ]
    sweep.mkdir(parents=True, exist_ok=True)
    for i, planned in enumerate(write_plan(sweep, jobs)):
        out = sweep / planned.dirname
        info = {"job_key": planned.job_key, "overrides": planned.overrides, "attempts": 1}
        write_json_atomic(out / JOB_FILENAME, info)
        write_result(out, synthetic_record(i, planned.job_key, seeds))
    return sweep
