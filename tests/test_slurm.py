"""Sweeps through a real single-node SLURM cluster (scripts/slurm/up.sh).

Marked `slurm` and not in the default run: `make test-slurm` brings the cluster up, runs these
and takes it down. Without a reachable cluster they FAIL with a message saying how to start
one; set REINITLAB_SKIP_SLURM=1 to skip them explicitly. Every SLURM call has a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from reinitlab.report.collect import collect
from reinitlab.sweep.status import sweep_status
from reinitlab.training.resume import PREEMPT_AT_STEP_ENV
from tests.helpers import REPO, needs_glue
from tests.test_adaptive_sweep import ADAPTIVE, expected_decisions
from tests.test_resume import JOB
from tests.test_sweeps import QUICK, multirun, records

pytestmark = [pytest.mark.slurm, needs_glue]

SLURM_DIR = Path(os.environ.get("REINITLAB_SLURM_DIR", "/tmp/reinitlab-slurm"))
ON_SLURM = (
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",  # this cluster has no GPUs (gres is rejected)
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=15",  # >= 11: submitit counts a preemption as a time-out below
)


def slurm_env() -> dict[str, str]:
    return {"PATH": f"{SLURM_DIR / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    if os.environ.get("REINITLAB_SKIP_SLURM") == "1":
        pytest.skip("REINITLAB_SKIP_SLURM=1")
    env = {**os.environ, **slurm_env()}
    how = "start it with scripts/slurm/up.sh (as root), or set REINITLAB_SKIP_SLURM=1 to skip"
    if shutil.which("sinfo", path=env["PATH"]) is None:
        pytest.fail(f"SLURM is not installed (no sinfo): {how}", pytrace=False)
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"sinfo timed out: {how}", pytrace=False)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.fail(f"no SLURM cluster answers ({out.stderr.strip()}): {how}", pytrace=False)
    if shutil.which("sacct", path=env["PATH"]) is None:
        pytest.fail(f"no sacct on PATH (up.sh installs a stand-in): {how}", pytrace=False)


def on_slurm(sweep: Path, *overrides: str, env: dict | None = None, base=QUICK, timeout=420):
    return multirun(
        sweep, *ON_SLURM, *overrides, env={**slurm_env(), **(env or {})}, base=base, timeout=timeout
    )


def squeue(*args: str) -> str:
    return subprocess.run(
        ["squeue", "--states=all", "--array", "-h", *args],
        env={**os.environ, **slurm_env()},
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout


def test_multirun_completes_through_slurm_with_every_record(tmp_path):
    sweep = tmp_path / "sweep"
    out = on_slurm(sweep, "task=wnli", "reinit.k=1,2,3", "seed=0")
    assert out.returncode == 0, out.stderr[-3000:]
    labels = sorted(r["scheme"]["label"] for r in records(sweep).values())
    assert labels == ["baseline", "k=1", "k=2", "k=3"]
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 4  # ran as SLURM jobs
    assert sweep_status(sweep).counts() == {
        "completed": 4,
        "failed": 0,
        "missing": 0,
        "running": 0,
        "corrupt": 0,
    }


def test_jobs_per_task_runs_a_12_job_sweep_as_3_array_tasks_each_job_in_the_ledger(tmp_path):
    sweep = tmp_path / "sweep"
    out = on_slurm(
        sweep, "task=wnli", "reinit.k=1,2", "seed=0,1,2,3", "hydra.launcher.jobs_per_task=4",
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(records(sweep)) == 12  # 2 k x 4 seeds + 4 baselines, each its own record
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 3  # three array tasks
    status = sweep_status(sweep)
    assert status.counts()["completed"] == 12 and status.planned == 12
    assert all(j.attempts == 1 for j in status.jobs)


def test_cancelling_one_task_of_grouped_jobs_leaves_only_its_unfinished_jobs_to_run(tmp_path):
    sweep = tmp_path / "sweep"
    # 60 one-batch epochs: about 4 s a job, so that the second task is still on its first job
    # when the kill lands (at one epoch a task's four jobs took 4 s in all and could finish
    # before scancel reached it)
    base = (*(a for a in QUICK if not a.startswith("trainer.max_epochs=")), "trainer.max_epochs=60")
    args = ("task=wnli", "reinit.k=1", "seed=0,1,2,3", "hydra.launcher.jobs_per_task=4",
            "hydra.launcher.array_parallelism=1")  # fmt: skip
    cmd = [sys.executable, str(REPO / "train.py"), "-m", *base, *ON_SLURM,
           f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}", *args]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", **slurm_env()}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lease = None  # the lease of the second task's first job (plan position 4)
        deadline = time.monotonic() + 300
        while lease is None and time.monotonic() < deadline:
            for path in sweep.glob("4_*/running.json"):
                try:
                    lease = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # released between glob and read: look again
            time.sleep(0.05)
        assert lease is not None, "the second task never started"
        # SIGKILL: a plain scancel's SIGTERM is ignored by submitit (preemption)
        kill = ["scancel", "--full", "--signal=KILL", str(lease["slurm_job_id"])]
        subprocess.run(kill, env=env, check=True, timeout=20)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    # the cancelled task's jobs are failed jobs
    assert proc.returncode == 1, f"{lease}\n{squeue()}\n{out[-2000:]}\n{err[-3000:]}"
    done_before = {p: p.read_bytes() for p in records(sweep)}
    first_task = {p for p in done_before if p.parent.name.split("_")[0] in "0123"}
    assert len(first_task) == 4 and len(done_before) < 8

    out = on_slurm(sweep, *args, base=base)
    assert out.returncode == 0, out.stderr[-3000:]
    left = 8 - len(done_before)
    assert f"{len(done_before)} already completed, 0 running elsewhere, {left} to run" in out.stdout
    for p, data in done_before.items():
        assert p.read_bytes() == data  # completed jobs were not re-run
    assert len(records(sweep)) == 8
    assert sweep_status(sweep).counts()["completed"] == 8


def test_a_killed_job_is_reported_failed_without_hanging_and_the_rest_finish(tmp_path):
    sweep = tmp_path / "sweep"
    # job 1 trains for long enough to be killed while running; job 0 is quick
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *QUICK,
        *ON_SLURM,
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
        "task=wnli",
        "reinit.k=1",
        "trainer.max_epochs=1,400",
        "hydra.sweeper.add_baselines=false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", **slurm_env()}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        long_dir = None
        deadline = time.monotonic() + 180
        while long_dir is None and time.monotonic() < deadline:
            for job in sweep.glob("1_*/job.json"):
                if (job.parent / "running.json").is_file():
                    long_dir = job.parent
            time.sleep(0.5)
        assert long_dir is not None, "the long job never started"
        slurm_id = json.loads((long_dir / "running.json").read_text())["slurm_job_id"]
        subprocess.run(["scancel", slurm_id], env=env, check=True, timeout=20)
        stdout, stderr = proc.communicate(timeout=240)  # submitit must not wait forever
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    assert proc.returncode != 0
    assert "failed" in stderr
    recs = list(records(sweep).values())
    assert [r["config"]["trainer"]["max_epochs"] for r in recs] == [1]
    st = sweep_status(sweep)
    assert st.counts() == {"completed": 1, "failed": 1, "missing": 0, "running": 0, "corrupt": 0}
    (killed,) = st.by_state("failed")
    assert killed.dir == long_dir and killed.kind == "killed"
    assert "CANCELLED" in squeue("-j", slurm_id, "-o", "%T")


def test_preempted_job_is_requeued_and_resumes_with_the_same_metrics(tmp_path):
    ref = multirun(tmp_path / "ref", *JOB, base=())  # uninterrupted, locally
    assert ref.returncode == 0, ref.stderr[-3000:]
    (expected,) = records(tmp_path / "ref").values()

    sweep = tmp_path / "sweep"
    out = on_slurm(sweep, *JOB, env={PREEMPT_AT_STEP_ENV: "3"}, base=())
    assert out.returncode == 0, out.stderr[-3000:]
    (rec,) = records(sweep).values()
    job_dir = Path(rec["path"]).parent if "path" in rec else next(sweep.glob("0_*"))
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*.err"))
    assert "Caught signal SIGUSR2" in logs and "DUE TO JOB REQUEUE" in logs  # real requeue
    assert rec["resumed_from"] and rec["steps"] == 8 and rec["steps_this_process"] == 5
    assert rec["history"] == expected["history"] and rec["final"] == expected["final"]
    # the report sees exactly one completed job, from its second attempt, and no failure
    col = collect([sweep])
    assert len(col.records) == 1 and col.problems == [] and col.records[0]["attempts"] == 2
    assert sweep_status(sweep).counts()["completed"] == 1
    wandb_runs = sorted((job_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(p.name.endswith(rec["wandb_id"]) for p in wandb_runs)


def test_rerunning_an_interrupted_sweep_runs_only_the_missing_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("task=wnli", "reinit.k=1,2,3", "seed=0", "hydra.launcher.array_parallelism=1")
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *QUICK,
        *ON_SLURM,
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", **slurm_env()}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while len(records(sweep)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    # interrupt: the submitting process dies and the rest of the array is cancelled
    proc.kill()
    proc.wait(timeout=30)
    array_ids = {line.split("_")[0] for line in squeue("-o", "%i", "-n", "train").split()}
    for job in array_ids:
        subprocess.run(["scancel", job], env=env, timeout=20)
    time.sleep(1)
    done_before = {p: p.read_bytes() for p in records(sweep)}
    assert 2 <= len(done_before) < 4

    submitted_before = set((sweep / ".submitit").glob("*/*_submitted.pkl"))
    out = on_slurm(sweep, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    after = records(sweep)
    assert len(after) == 4
    for p, data in done_before.items():
        assert p.read_bytes() == data  # completed jobs were not re-run
    submitted = set((sweep / ".submitit").glob("*/*_submitted.pkl")) - submitted_before
    assert len(submitted) == 4 - len(done_before)  # only the missing jobs went to SLURM
    assert sweep_status(sweep).counts() == {
        "completed": 4,
        "failed": 0,
        "missing": 0,
        "running": 0,
        "corrupt": 0,
    }


def test_adaptive_seeds_run_each_stage_as_its_own_array_and_a_rerun_trains_nothing(tmp_path):
    """Adaptive seeds through SLURM: each stage is one array of the stage's new jobs (3 to an
    array task, so that fewer processes start), decided from the records the tasks wrote.
    STS-B on the tiny model: its Pearson differs from seed to seed, so the paired differences
    have a spread, and 2 seeds (a t interval with one degree of freedom) cannot settle a
    comparison: stage 2 runs."""
    sweep = tmp_path / "sweep"
    args = (*ADAPTIVE, "hydra.launcher.jobs_per_task=3")
    out = on_slurm(sweep, *args)
    assert out.returncode == 0, out.stderr[-3000:]
    decisions = json.loads((sweep / "decisions.json").read_text())
    for got, exp in zip(decisions, expected_decisions(sweep), strict=True):
        assert {k: v for k, v in got.items() if k != "cell"} == pytest.approx(
            {k: v for k, v in exp.items() if k != "cell"}
        )
    assert [d["variant"] for d in decisions] == ["k=1", "k=3"]
    later = [d for d in decisions if d["seeds_used"] == 3]
    assert later, f"every comparison was decided at 2 seeds, stage 2 never ran: {decisions}"
    # the jobs the decisions require: each variant's seeds_used seeds, and the baseline as
    # many as the comparison that needed the most
    recs = records(sweep)
    per_label = {lab: sorted(r["seed"] for r in recs.values() if r["scheme"]["label"] == lab)
                 for lab in ("k=1", "k=3", "baseline")}  # fmt: skip
    for d in decisions:
        assert per_label[d["variant"]] == list(range(d["seeds_used"]))
    assert per_label["baseline"] == [0, 1, 2]
    stage_2 = len(later) + 1  # seed 2 of each undecided variant and of the baseline
    n = 6 + stage_2
    assert len(recs) == n and len({r["job_key"] for r in recs.values()}) == n
    assert "0 already completed, 0 running elsewhere, 6 to run" in out.stdout
    assert f"6 already completed, 0 running elsewhere, {stage_2} to run" in out.stdout
    # the array task that trained each job, as the job recorded it (hydra.job.id): one array
    # per stage, stage 1 (seeds 0 and 1) in 2 tasks of 3 jobs, stage 2 (seed 2) in one task
    task_of = {p: OmegaConf.load(p.parent / ".hydra" / "hydra.yaml").hydra.job.id for p in recs}
    arrays = sorted({t.split("_")[0] for t in task_of.values()}, key=int)
    assert len(arrays) == 2
    for p, rec in recs.items():
        assert task_of[p].split("_")[0] == arrays[0 if rec["seed"] < 2 else 1]
    jobs_per_task = Counter(task_of.values())
    assert sorted(jobs_per_task.values()) == sorted([3, 3, stage_2])
    # what SLURM ran: exactly these array tasks, each completed, each with its result
    states = squeue("-j", ",".join(arrays), "-o", "%i %T").split("\n")
    assert dict(line.split() for line in states if line.strip()) == {
        t: "COMPLETED" for t in jobs_per_task
    }
    results = Counter(p.parent.name.split("_")[0]
                      for p in (sweep / ".submitit").glob("*/*_result.pkl"))  # fmt: skip
    assert results == {arrays[0]: 2, arrays[1]: 1}
    status = sweep_status(sweep)
    assert status.counts() == {
        "completed": n,
        "failed": 0,
        "missing": 0,
        "running": 0,
        "corrupt": 0,
    }
    assert status.planned == n and all(j.attempts == 1 for j in status.jobs)

    # the same command again: the same decisions from the same records, nothing submitted
    before = {p: p.read_bytes() for p in recs}
    submitted = sorted((sweep / ".submitit").iterdir())
    again = on_slurm(sweep, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{n} already completed, 0 running elsewhere, 0 to run" in again.stdout
    assert f"all {n} jobs are complete; nothing to run" in again.stdout
    assert sorted((sweep / ".submitit").iterdir()) == submitted
    assert {p: p.read_bytes() for p in records(sweep)} == before
    assert json.loads((sweep / "decisions.json").read_text()) == decisions
