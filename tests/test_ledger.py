"""The sweep ledger: one truth about a study that the sweeper, each job, `status` and the report
all read. Each fault found by hand (duplicates counted as seeds, phantom failures, malformed
files, concurrent sweeps, kill -9, a full disk, Ctrl-C) is reproduced here."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reinitlab.atomic import write_json_atomic
from reinitlab.report.collect import collect
from reinitlab.sweep import ledger
from reinitlab.sweep.ledger import (
    FAILED_FILENAME,
    JOB_FILENAME,
    PLAN_FILENAME,
    RESULT_FILENAME,
    RUNNING_FILENAME,
    Attempt,
    Ledger,
    PreemptedError,
    Skip,
    Terminated,
    check_record,
    claim,
)
from reinitlab.sweep.status import format_status
from reinitlab.training.resume import CHECKPOINT_RELPATH, PREEMPT_AT_STEP_ENV
from tests.helpers import GLUE, REPO, needs_glue
from tests.test_sweeps import QUICK, multirun, records

HOST = socket.gethostname()
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
TRAINED = re.compile(r"^\[reinitlab\] \w+ \| tiny \| ", re.M)  # train()'s closing line


def good_record(key: str, value: float = 0.5, seed: int = 0) -> dict:
    return {
        "status": "completed",
        "job_key": key,
        "task": "rte",
        "model": "tiny",
        "num_layers": 3,
        "scheme": {"name": "progressive", "k": 2, "label": "k=2"},
        "seed": seed,
        "final": {"epoch": 0, "step": 1, "metrics": {"val/primary": value}},
        "config": {},
    }


def job_dir(root: Path, name: str, key: str, *, record=None, failed=None, lease=None, tries=1):
    d = root / name
    write_json_atomic(d / JOB_FILENAME, {"job_key": key, "overrides": [name], "attempts": tries})
    if record is not None:
        write_json_atomic(d / RESULT_FILENAME, record)
    if failed is not None:
        write_json_atomic(d / FAILED_FILENAME, failed)
    if lease is not None:
        write_json_atomic(d / RUNNING_FILENAME, lease)
    return d


# --- records and plan ---------------------------------------------------------------------


def test_record_schema_rejects_what_a_report_cannot_use():
    assert check_record(good_record("a")) is None
    assert "not a JSON object (a list)" in check_record([1, 2])
    assert "'task'" in check_record({**good_record("a"), "task": None})
    assert "'seed'" in check_record({**good_record("a"), "seed": True})
    nan = {**good_record("a"), "final": {"metrics": {"val/primary": float("nan")}}}
    assert "is nan" in check_record(nan)
    assert "status is 'failed'" in check_record({**good_record("a"), "status": "failed"})
    assert "val/primary" in check_record({**good_record("a"), "final": {"metrics": {}}})


def test_a_damaged_plan_is_named_with_how_to_recover_and_never_crashes(tmp_path):
    job_dir(tmp_path, "0_a", "a", record=good_record("a"))
    (tmp_path / PLAN_FILENAME).write_text('{"jobs": [{"job_key": "a", "overr')  # truncated
    with pytest.raises(ledger.LedgerError, match=re.escape(str(tmp_path / PLAN_FILENAME))):
        ledger.read_plan(tmp_path)
    led = Ledger(tmp_path)
    assert "is damaged: not valid JSON" in led.plan_error and "Delete it" in led.plan_error
    assert led.counts()["completed"] == 1 and led.planned is None
    assert "plan: the sweep plan" in format_status(tmp_path, led)
    col = collect([tmp_path])
    # no job, so not a corrupt one: the report counts it as status does, in status's words
    assert [(p.kind, p.where) for p in col.problems] == [("plan", str(tmp_path / PLAN_FILENAME))]
    assert col.problems[0].reason == led.plan_problem
    assert "cannot be counted" in col.problems[0].reason and "Delete it" in col.problems[0].reason
    (tmp_path / PLAN_FILENAME).write_text('{"jobs": [{"job_key": 3}]}')
    assert "lacks a job_key" in Ledger(tmp_path).plan_error


# --- one job, however many directories ------------------------------------------------------


def test_duplicates_are_one_job_never_two_samples(tmp_path):
    """Two completed directories of one key (a sweep run twice by another sweeper): one job."""
    job_dir(tmp_path, "0_x", "k1", record=good_record("k1", 0.50))
    job_dir(tmp_path, "7_y", "k1", record=good_record("k1", 0.61))
    job_dir(tmp_path, "1_z", "k2", record=good_record("k2", 0.40, seed=1))
    led = Ledger(tmp_path)
    assert led.counts() == {"completed": 2, "failed": 0, "missing": 0, "running": 0, "corrupt": 0}
    assert led.job("k1").attempts == 2 and len(led.job("k1").dirs) == 2
    col = collect([tmp_path])
    assert sorted(r["job_key"] for r in col.records) == ["k1", "k2"] and col.problems == []


def test_a_job_that_failed_then_succeeded_is_completed_with_two_attempts(tmp_path):
    failed = {"kind": "preempted", "error": "got SIGUSR2"}
    job_dir(tmp_path, "0_a", "a", failed=failed)
    job_dir(tmp_path, "5_a", "a", record=good_record("a"))
    led = Ledger(tmp_path)
    job = led.job("a")
    assert (job.state, job.attempts, job.dir) == ("completed", 2, tmp_path / "5_a")
    assert collect([tmp_path]).problems == []  # no phantom failure from the old attempt


def test_malformed_records_are_corrupt_with_their_path_and_crash_nothing(tmp_path):
    job_dir(tmp_path, "0_a", "a").joinpath(RESULT_FILENAME).write_text("[1, 2]")
    job_dir(tmp_path, "1_b", "b").joinpath(RESULT_FILENAME).write_text('{"status": "compl')
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / RESULT_FILENAME).write_text("[]")  # not even a job.json
    job_dir(tmp_path, "2_c", "c", record=good_record("c"))
    led = Ledger(tmp_path)
    assert led.counts() == {"completed": 1, "failed": 0, "missing": 0, "running": 0, "corrupt": 3}
    reasons = {j.error for j in led.by_state("corrupt")}
    assert f"{tmp_path / '0_a' / RESULT_FILENAME}: not a JSON object (a list)" in reasons
    assert any(
        str(tmp_path / "1_b" / RESULT_FILENAME) in r and "not valid JSON" in r for r in reasons
    )
    col = collect([tmp_path])
    assert len(col.records) == 1 and sorted(p.kind for p in col.problems) == ["corrupt"] * 3


def test_leases_live_stale_and_from_another_host(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(tmp_path / "held.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        live = {"pid": holder.pid, "host": HOST, "lock": str(tmp_path / "held.lock")}
        job_dir(tmp_path, "0_live", "live", lease=live)
        now = time.time()
        job_dir(tmp_path, "1_far", "far", lease={"pid": 1, "host": "elsewhere", "heartbeat": now})
        old = now - ledger.STALE_AFTER_S - 1
        job_dir(tmp_path, "2_old", "old", lease={"pid": 1, "host": "elsewhere", "heartbeat": old})
        led = Ledger(tmp_path)
        assert {j.key: j.state for j in led.jobs} == {
            "live": "running",
            "far": "running",
            "old": "failed",
        }
        assert led.job("old").kind == "killed" and "ended without a result" in led.job("old").error
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lease is stale, reported as killed (not running, not missing)
    job = Ledger(tmp_path).job("live")
    assert (job.state, job.kind) == ("failed", "killed")


# --- claims ---------------------------------------------------------------------------------


def test_claim_is_exclusive_then_skips_completed_and_counts_attempts(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger, "CLAIM_WAIT_S", 0.2)
    out = tmp_path / "0_a"
    first = claim(tmp_path, "a", out, ["x=1"])
    assert isinstance(first, Attempt)
    lease = json.loads((out / RUNNING_FILENAME).read_text())
    assert lease["pid"] == os.getpid() and lease["lock"].endswith("a.lock")
    second = claim(tmp_path, "a", tmp_path / "9_a", ["x=1"])  # a second sweep, same job
    assert isinstance(second, Skip) and second.reason == "running"
    assert not (tmp_path / "9_a").exists()  # it wrote nothing
    assert Ledger(tmp_path).job("a").state == "running"

    first.fail(RuntimeError("boom"))
    failed = json.loads((out / FAILED_FILENAME).read_text())
    assert (failed["kind"], failed["error"]) == ("error", "RuntimeError: boom")
    assert not (out / RUNNING_FILENAME).exists()

    retry = claim(tmp_path, "a", out, ["x=1"])
    assert isinstance(retry, Attempt) and not (out / FAILED_FILENAME).exists()
    assert json.loads((out / JOB_FILENAME).read_text())["attempts"] == 2
    write_json_atomic(out / RESULT_FILENAME, good_record("a"))
    retry.complete()
    done = claim(tmp_path, "a", tmp_path / "3_a", ["x=1"])
    assert isinstance(done, Skip) and done.reason == "completed" and done.job.dir == out
    assert Ledger(tmp_path).job("a").attempts == 2


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (KeyboardInterrupt(), "interrupted"),
        (Terminated("killed by SIGTERM"), "killed"),
        (PreemptedError("got SIGUSR2"), "preempted"),
        (ValueError("bad"), "error"),
    ],
)
def test_failure_kinds(tmp_path, exc, kind):
    attempt = claim(tmp_path, "a", tmp_path / "0_a", [])
    assert attempt.fail(exc) is None
    assert json.loads((tmp_path / "0_a" / FAILED_FILENAME).read_text())["kind"] == kind
    assert Ledger(tmp_path).job("a").kind == kind


def test_a_failure_that_cannot_be_recorded_says_so(tmp_path, monkeypatch):
    attempt = claim(tmp_path, "a", tmp_path / "0_a", [])

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ledger, "write_json_atomic", full)
    problem = attempt.fail(RuntimeError("boom"))
    assert problem.startswith(
        f"could not record the failure in {tmp_path / '0_a' / FAILED_FILENAME}"
    )
    assert "No space left on device" in problem


# --- whole sweeps ---------------------------------------------------------------------------

SWEEP = ("task=wnli", "reinit.k=1,2,3", "seed=0")  # + the baseline: 4 jobs


def start_sweep(sweep: Path, *overrides: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            *QUICK,
            f"data.cache_dir={sweep.parent / 'cache'}",
            f"hydra.sweep.dir={sweep}",
            *overrides,
        ],
        cwd=sweep.parent,
        env={**ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(predicate, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def same_counts(sweep: Path) -> dict[str, int]:
    """status's counts, after checking the report counts the same jobs the same way."""
    led = Ledger(sweep)
    counts = led.counts()
    col = collect([sweep])
    kinds = [p.kind for p in col.problems if not p.where.endswith(PLAN_FILENAME)]
    assert len(col.records) == counts["completed"]
    for state in ("failed", "missing", "running", "corrupt"):
        assert kinds.count(state) == counts[state], state
    return counts


@needs_glue
@pytest.mark.parametrize("stagger_s", [0.0, pytest.param(4.0, marks=pytest.mark.slow)])
def test_two_sweeps_into_one_dir_train_each_job_exactly_once(tmp_path, stagger_s):
    sweep = tmp_path / "sweep"
    first = start_sweep(sweep, *SWEEP)
    time.sleep(stagger_s)
    second = start_sweep(sweep, *SWEEP)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [o[1][-2000:] for o in outs]
    trained = sum(len(TRAINED.findall(out)) for out, _ in outs)
    assert trained == 4  # every job trained once, by one of the two sweeps
    assert len(records(sweep)) == 4
    assert same_counts(sweep)["completed"] == 4
    assert all(j.attempts == 1 for j in Ledger(sweep).jobs)


@pytest.mark.slow
@needs_glue
def test_kill_9_mid_sweep_then_rerun_status_and_report_agree(tmp_path):
    sweep = tmp_path / "sweep"
    slow = ("data.max_train_samples=256", "trainer.max_epochs=3", "~trainer.limit_train_batches")
    proc = start_sweep(sweep, *SWEEP, *slow)
    lease = wait_for(lambda: list(sweep.glob(f"1_*/{RUNNING_FILENAME}")), what="job 2 to start")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_dir = lease[0].parent
    counts = same_counts(sweep)
    assert counts == {"completed": 1, "failed": 1, "missing": 2, "running": 0, "corrupt": 0}
    job = Ledger(sweep).job(json.loads((killed_dir / JOB_FILENAME).read_text())["job_key"])
    assert (job.state, job.kind, job.dir) == ("failed", "killed", killed_dir)

    again = start_sweep(sweep, *SWEEP, *slow)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert "4 jobs (1 baselines added); 1 already completed, 0 running elsewhere, 3 to run" in out
    assert same_counts(sweep) == {
        "completed": 4,
        "failed": 0,
        "missing": 0,
        "running": 0,
        "corrupt": 0,
    }
    assert Ledger(sweep).job(job.key).attempts == 2  # the same directory, a second attempt
    assert sorted(p.parent for p in sweep.glob(f"*/{RESULT_FILENAME}")) == sorted(
        p.parent for p in sweep.glob(f"*/{JOB_FILENAME}")
    )  # no leftover directory of the killed attempt


@pytest.mark.slow
@needs_glue
def test_malformed_files_are_corrupt_and_the_rerun_completes_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    out = multirun(sweep, *SWEEP)
    assert out.returncode == 0, out.stderr[-3000:]
    first, second = sorted(sweep.glob(f"[01]_*/{RESULT_FILENAME}"))
    first.write_text(json.dumps([json.loads(first.read_text())]))  # a list
    second.write_text(second.read_text()[:100])  # truncated
    plan = sweep / PLAN_FILENAME
    plan.write_text(plan.read_text()[:50])  # truncated

    status = subprocess.run(
        [sys.executable, "-m", "reinitlab.cli", "status", str(sweep)],
        capture_output=True,
        text=True,
        env={**ENV, "PYTHONPATH": str(REPO / "src")},
    )
    assert status.returncode == 0, status.stderr
    assert "completed 2 | failed 0 | missing 0 | running 0 | corrupt 2" in status.stdout
    assert f"{first}: not a JSON object (a list)" in status.stdout
    assert f"{plan} is damaged" in status.stdout
    counts = same_counts(sweep)
    assert counts["corrupt"] == 2

    again = multirun(sweep, *SWEEP)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is damaged" in again.stdout and "2 already completed" in again.stdout
    assert len(TRAINED.findall(again.stdout)) == 2  # only the two corrupt jobs re-ran
    assert same_counts(sweep)["completed"] == 4 and Ledger(sweep).plan_error is None

    done = multirun(sweep, *SWEEP)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all 4 jobs are complete; nothing to run" in done.stdout
    assert not TRAINED.findall(done.stdout)


ENOSPC_WRAPPER = """
import errno, sys, tempfile
real = tempfile.mkstemp
def mkstemp(*args, prefix=None, **kwargs):
    if prefix and prefix.startswith(('.result.json.', '.failed.json.')):
        raise OSError(errno.ENOSPC, 'No space left on device', kwargs.get('dir'))
    return real(*args, prefix=prefix, **kwargs)
tempfile.mkstemp = mkstemp
sys.argv = [sys.argv[1], *sys.argv[2:]]
sys.path.insert(0, {src!r})
from reinitlab.train import main
main()
"""


@pytest.mark.slow
@needs_glue
def test_a_full_disk_shows_the_job_error_and_stops_the_sweep(tmp_path):
    """ENOSPC while writing the record, and again while recording the failure (simulated:
    a tmpfs cannot be mounted here)."""
    wrapper = tmp_path / "enospc.py"
    wrapper.write_text(ENOSPC_WRAPPER.format(src=str(REPO / "src")))
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(wrapper), str(REPO / "train.py"), "-m", *QUICK]
    out = subprocess.run(
        [*cmd, f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}", *SWEEP],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 2
    assert "[Errno 28] No space left on device" in text  # the job's own error
    assert f"could not record the failure in {sweep}" in text and FAILED_FILENAME in text
    assert text.count("reinitlab: error: no space left on the device") == 1
    assert "The sweep stopped after job 1/4" in text
    assert "job 2/4" not in text and len(list(sweep.glob("*/.hydra"))) == 1


@pytest.mark.slow
@needs_glue
def test_ctrl_c_is_recorded_as_interrupted(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "train.py"),
            *QUICK,
            "~trainer.limit_train_batches",
            "task=rte",
            "data.max_train_samples=2000",
            # far more than the test waits: the run is still training when Ctrl-C comes, however
            # late a loaded machine shows the log line below
            "trainer.max_epochs=200",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a shell: Ctrl-C not ignored, whatever an earlier test left in this process
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: "Loading `train_dataloader`" in _log(run_dir), what="training to start")
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before Ctrl-C could interrupt it"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    # one line on the console: what happened, where it is recorded, how to run it again
    assert "Traceback" not in err
    assert "[reinitlab] interrupted (Ctrl-C): job " in err and f"hydra.run.dir={run_dir}" in err
    failed = json.loads((run_dir / FAILED_FILENAME).read_text())
    assert failed["kind"] == "interrupted" and "interrupted" in failed["error"], failed
    assert Ledger(run_dir).jobs[0].kind == "interrupted"
    assert not (run_dir / RUNNING_FILENAME).exists()


def _log(run_dir: Path) -> str:
    logs = list(run_dir.glob("*.log"))
    return logs[0].read_text() if logs else ""


@pytest.mark.slow
@needs_glue
def test_a_preempted_single_run_prints_the_command_that_resumes_it(tmp_path):
    job = (
        "model=tiny",
        "logger=none",
        f"data.glue_dir={GLUE}",
        "task=stsb",
        "data.max_train_samples=128",
        "trainer.max_epochs=2",
        "+trainer.limit_val_batches=2",
        f"data.cache_dir={tmp_path / 'cache'}",
    )
    base = [sys.executable, str(REPO / "train.py")]
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=600)
    cut = subprocess.run([*base, *job], env={**ENV, PREEMPT_AT_STEP_ENV: "3"}, **run)
    assert cut.returncode != 0
    (command,) = re.findall(r"resume this run with:\n  (python train\.py .*)", cut.stdout)
    run_dir = Path(re.search(r"hydra\.run\.dir=(\S+)", command).group(1))
    assert (run_dir / CHECKPOINT_RELPATH).is_file()
    import shlex

    resumed = subprocess.run([*base, *shlex.split(command)[2:]], env=ENV, **run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rec = json.loads((run_dir / RESULT_FILENAME).read_text())
    assert rec["resumed_from"] and rec["steps"] == 8 and rec["steps_this_process"] == 5
    assert Ledger(run_dir).jobs[0].attempts == 2


def test_unwritable_output_and_cache_dirs_fail_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        ([f"hydra.run.dir={blocker}/run"], "hydra.run.dir", f"{blocker}/run"),
        ([f"data.cache_dir={blocker}/c", f"hydra.run.dir={tmp_path}/r"], "data.cache_dir", ""),
        (["-m", f"hydra.sweep.dir={blocker}/s", "reinit.k=1,2"], "hydra.sweep.dir", ""),
        (
            ["-m", f"hydra.sweep.dir={tmp_path}/s", f"data.cache_dir={blocker}/c", "reinit.k=1"],
            "data.cache_dir",
            "",
        ),
    ]
    for args, option, path in cases:
        cmd = [sys.executable, str(REPO / "train.py"), *args, "model=tiny", "logger=none"]
        out = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "reinitlab: error: cannot write" in out.stderr and f"set {option}" in out.stderr
        assert path in out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.rglob(RUNNING_FILENAME))  # no job started


def test_the_writable_check_expands_home_and_leaves_no_folder_named_tilde(tmp_path, monkeypatch):
    """The default cache dir is `~/.cache/reinitlab`; checking it must not create `./~` (a
    folder a user might remove with `rm -rf ~`)."""
    from reinitlab.sweep.ledger import check_writable

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    check_writable(Path("~/.cache/reinitlab"), "data.cache_dir")
    assert (home / ".cache" / "reinitlab").is_dir() and not list(work.iterdir())


@pytest.mark.slow
@needs_glue
def test_kill_9_of_a_gpus_sweep_leaves_no_orphan_jobs(tmp_path):
    """The job processes of a killed `gpus` launcher die with it and are recorded as killed
    (not left running unseen, which a re-run would race)."""
    sweep = tmp_path / "sweep"
    env = {"REINITLAB_FAKE_GPUS": "0,1", "REINITLAB_GPU_LOCK_DIR": str(tmp_path / "locks")}
    slow = ("data.max_train_samples=1000", "trainer.max_epochs=20", "~trainer.limit_train_batches")
    proc = start_sweep(sweep, "hydra/launcher=gpus", *SWEEP, *slow, env=env)

    def two_running():
        found = list(sweep.glob(f"*/{RUNNING_FILENAME}"))
        return found if len(found) == 2 else None

    leases = wait_for(two_running, timeout=180, what="two jobs to run")
    pids = [json.loads(p.read_text())["pid"] for p in leases]
    os.kill(proc.pid, signal.SIGKILL)  # the launcher only
    proc.wait()
    wait_for(lambda: not any(ledger.pid_alive(p) for p in pids), timeout=60, what="jobs to die")
    led = Ledger(sweep)
    assert led.counts()["running"] == 0
    killed = [j for j in led.jobs if j.state == "failed"]
    assert len(killed) == 2 and {j.kind for j in killed} == {"killed"}
