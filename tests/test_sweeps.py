"""Sweeps that scale: job identity, baselines added by the sweeper, skip-on-rerun, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reinitlab.sweep.jobkey import job_key
from reinitlab.sweep.ledger import (
    FAILED_FILENAME,
    JOB_FILENAME,
    RESULT_FILENAME,
    RUNNING_FILENAME,
    slurm_job_id,
)
from reinitlab.sweep.status import sweep_status
from tests.helpers import GLUE, REPO, compose_cfg, needs_glue

QUICK = (
    "model=tiny",
    "logger=none",
    "data.max_train_samples=32",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    f"data.glue_dir={GLUE}",
)


def multirun(
    sweep_dir: Path, *overrides: str, env: dict | None = None, timeout: int = 600, base=QUICK
):
    cache = sweep_dir.parent / "cache"
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            *base,
            f"data.cache_dir={cache}",
            f"hydra.sweep.dir={sweep_dir}",
            *overrides,
        ],
        cwd=sweep_dir.parent,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "WANDB_SILENT": "true",
            "OMP_NUM_THREADS": "1",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(sweep_dir: Path) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(sweep_dir.rglob(RESULT_FILENAME))}


def test_job_key_is_the_config_not_paths_or_logger(tmp_path):
    base = job_key(compose_cfg(tmp_path, "model=tiny", "reinit.k=2"))
    elsewhere = compose_cfg(
        tmp_path / "other", "model=tiny", "reinit.k=2", "logger=csv", "data.cache_dir=/x"
    )
    assert job_key(elsewhere) == base
    assert job_key(compose_cfg(tmp_path, "model=tiny", "reinit.k=3")) != base
    assert job_key(compose_cfg(tmp_path, "model=tiny", "reinit.k=2", "seed=1")) != base
    assert job_key(compose_cfg(tmp_path, "model=tiny", "reinit.k=2", "optim.lr=1e-4")) != base
    # trainer.max_steps at its "no limit" default is no part of the identity (keys of jobs run
    # before the option existed stay the same); a real limit is
    assert job_key(compose_cfg(tmp_path, "model=tiny", "reinit.k=2", "trainer.max_steps=5")) != base
    unset = compose_cfg(tmp_path, "model=tiny", "reinit.k=2", "~trainer.max_steps")
    assert job_key(unset) == base


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The issue's command shape on the 3-layer tiny model: 2 tasks x k=1..3 x 2 seeds."""
    sweep = tmp_path_factory.mktemp("study") / "sweep"
    out = multirun(sweep, "task=wnli,rte", "reinit.k=range(1,4)", "seed=0,1")
    assert out.returncode == 0, out.stderr[-3000:]
    return sweep, out


@needs_glue
def test_sweep_adds_exactly_one_baseline_per_task_and_seed(study):
    sweep, _ = study
    recs = list(records(sweep).values())
    got = sorted((r["task"], r["seed"], r["scheme"]["label"]) for r in recs)
    expected = sorted(
        [(t, s, f"k={k}") for t in ("wnli", "rte") for s in (0, 1) for k in (1, 2, 3)]
        + [(t, s, "baseline") for t in ("wnli", "rte") for s in (0, 1)]
    )
    assert got == expected  # 12 + 4, no duplicates
    baselines = [r for r in recs if r["scheme"]["label"] == "baseline"]
    assert all(r["scheme"]["name"] == "none" and r["reset_tensors"] == [] for r in baselines)
    assert len({r["job_key"] for r in recs}) == 16
    plan = json.loads((sweep / "sweep_plan.json").read_text())["jobs"]
    assert sum(j["baseline_added"] for j in plan) == 4 and len(plan) == 16
    assert {j["job_key"] for j in plan} == {r["job_key"] for r in recs}


@pytest.mark.slow
@needs_glue
def test_no_baseline_added_when_the_sweep_has_one(tmp_path):
    """k=4 on the 3-layer model is the baseline (L+1): nothing is added."""
    sweep = tmp_path / "sweep"
    out = multirun(sweep, "task=wnli", "reinit.k=3,4", "seed=0")
    assert out.returncode == 0, out.stderr[-3000:]
    labels = sorted(r["scheme"]["label"] for r in records(sweep).values())
    assert labels == ["baseline", "k=3"]
    out = multirun(
        tmp_path / "off", "task=wnli", "reinit.k=3", "seed=0", "hydra.sweeper.add_baselines=false"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert [r["scheme"]["label"] for r in records(tmp_path / "off").values()] == ["k=3"]


@needs_glue
def test_rerun_skips_completed_and_runs_failed_and_missing(study):
    sweep, _ = study
    before = {p: p.read_bytes() for p in sweep.rglob(RESULT_FILENAME)}
    paths = sorted(before)
    missing, failed = paths[0], paths[1]
    missing.unlink()  # a job that never finished
    failed.unlink()  # a job that failed
    (failed.parent / FAILED_FILENAME).write_text('{"error": "RuntimeError: boom"}')
    st = sweep_status(sweep)
    assert st.counts() == {"completed": 14, "failed": 2, "missing": 0, "running": 0, "corrupt": 0}
    assert "RuntimeError: boom" in [j.error for j in st.by_state("failed")]

    out = multirun(sweep, "task=wnli,rte", "reinit.k=range(1,4)", "seed=0,1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "16 jobs (4 baselines added); 14 already completed, 0 running elsewhere, 2 to run" in (
        out.stdout
    )
    after = records(sweep)
    by_key = {rec["job_key"]: p for p, rec in after.items()}
    assert len(by_key) == 16
    for p in paths[2:]:
        assert p.read_bytes() == before[p]  # untouched: not re-run
    for p in (missing, failed):
        rerun = by_key[json.loads((p.parent / JOB_FILENAME).read_text())["job_key"]]
        assert json.loads(rerun.read_text())["status"] == "completed"
    assert not list(sweep.rglob(RUNNING_FILENAME))
    assert sweep_status(sweep).counts() == {
        "completed": 16,
        "failed": 0,
        "missing": 0,
        "running": 0,
        "corrupt": 0,
    }


@needs_glue
def test_a_failed_job_is_reported_with_its_error_and_the_rest_finish(tmp_path):
    """A job that fails while it runs (here: RTE's training file has a label no RTE example
    can have, with the sweeper's up-front checks, which would refuse the whole sweep for it,
    turned off) fails alone; the sweep reports it at the end."""
    import shutil

    glue = tmp_path / "glue"
    shutil.copytree(GLUE / "WNLI", glue / "WNLI")
    (glue / "RTE").mkdir(parents=True)
    shutil.copy(GLUE / "RTE" / "dev.tsv", glue / "RTE" / "dev.tsv")
    rows = (GLUE / "RTE" / "train.tsv").read_text().splitlines()[:40]
    rows[5] = rows[5].rsplit("\t", 1)[0] + "\tmaybe"
    (glue / "RTE" / "train.tsv").write_text("\n".join(rows) + "\n")

    sweep = tmp_path / "sweep"
    out = multirun(sweep, "task=wnli,rte", "reinit.k=1", "seed=0", f"data.glue_dir={glue}",
                   "hydra.sweeper.validate=false")  # fmt: skip
    assert out.returncode == 1  # the sweep reports the failures...
    labels = sorted((r["task"], r["scheme"]["label"]) for r in records(sweep).values())
    assert labels == [("wnli", "baseline"), ("wnli", "k=1")]  # ...after the other jobs finished
    assert "2 of 4 jobs failed" in out.stderr and "Traceback" not in out.stdout + out.stderr
    st = sweep_status(sweep)
    assert st.counts() == {"completed": 2, "failed": 2, "missing": 0, "running": 0, "corrupt": 0}
    for info in st.by_state("failed"):
        assert "task=rte" in info.overrides
        assert "'maybe'" in info.error and info.kind == "error"
        assert "'maybe'" in info.log  # the job log's last line
    # the results table at the end shows both failed jobs next to the completed ones
    table = out.stdout.split("[reinitlab] results (")[1]
    assert table.count("failed (error)") == 2 and table.count("completed") == 2
    cli = subprocess.run(
        [sys.executable, "-m", "reinitlab.cli", "status", str(sweep)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert cli.returncode == 0
    assert "completed 2 | failed 2 | missing 0 | running 0 | corrupt 0 | planned 4" in cli.stdout
    assert "'maybe'" in cli.stdout

    # each job also checks for itself (e.g. a requeued one), here with the sweeper's check off
    again = multirun(sweep, "task=wnli", "reinit.k=1", "seed=0", f"data.glue_dir={glue}",
                     "hydra.sweeper.skip_completed=false")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("[reinitlab] skip: job") == 2  # k=1 and its baseline


def test_status_tells_running_stale_and_missing_jobs_apart(tmp_path):
    from reinitlab.atomic import write_json_atomic

    sweep = tmp_path / "sweep"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    host = __import__("socket").gethostname()
    for name, key, running in [
        ("0_a", "live", {"pid": os.getpid(), "host": host}),
        ("1_b", "stale", {"pid": dead_pid, "host": host}),
    ]:
        write_json_atomic(sweep / name / JOB_FILENAME, {"job_key": key, "overrides": [name]})
        write_json_atomic(sweep / name / RUNNING_FILENAME, running)
    write_json_atomic(
        sweep / "sweep_plan.json",
        {
            "jobs": [
                {"job_key": k, "overrides": [k], "baseline_added": False}
                for k in ("live", "stale", "never")
            ]
        },
    )
    st = sweep_status(sweep)
    assert st.counts() == {"completed": 0, "failed": 1, "missing": 1, "running": 1, "corrupt": 0}
    (stale,) = st.by_state("failed")
    assert (
        stale.key == "stale" and stale.kind == "killed" and "ended without a result" in stale.error
    )
    assert [j.key for j in st.by_state("missing")] == ["never"]


def test_plugins_ship_in_the_wheel_as_a_namespace_package():
    """Hydra loads plugins only from the `hydra_plugins` namespace: ours must be in the wheel,
    and src/hydra_plugins must not become a regular package (it would hide other plugins)."""
    import tomllib

    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert "src/hydra_plugins" in wheel["targets"]["wheel"]["packages"]
    assert not (REPO / "src" / "hydra_plugins" / "__init__.py").exists()
    assert (REPO / "src" / "hydra_plugins" / "reinitlab_plugins" / "sweeper.py").is_file()


def test_slurm_job_id_names_the_array_task_not_the_whole_array():
    # SLURM gives an array task a bare SLURM_JOB_ID that can equal the array's own id, and
    # `scancel <array id>` would cancel the whole sweep; the recorded id must be ARRAY_TASK.
    task = {"SLURM_JOB_ID": "64", "SLURM_ARRAY_JOB_ID": "64", "SLURM_ARRAY_TASK_ID": "1"}
    assert slurm_job_id(task) == "64_1"
    assert slurm_job_id({"SLURM_JOB_ID": "70"}) == "70"
    assert slurm_job_id({}) is None
