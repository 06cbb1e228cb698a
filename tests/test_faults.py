"""Faults found by hand, each reproduced: a clear one-line message and the right exit code
(Ctrl-C, a killed sweep, a damaged plan, paths with spaces, wrong or read-only directories, a
refused k=0), and bad data files refused before a sweep launches anything."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reinitlab.cli import main as cli_main
from reinitlab.data import content, glue_io, squad_io
from reinitlab.data.tasks import load_task
from reinitlab.errors import ReinitlabError
from reinitlab.sweep import ledger
from reinitlab.sweep.job import Claimed, HydraJob, record_failure
from reinitlab.sweep.ledger import PLAN_FILENAME, Ledger, claim
from tests.helpers import GLUE, REPO, compose_cfg, needs_glue
from tests.helpers.squad_fixture import write_squad_dir
from tests.test_report import progressive_scheme, progressive_value, record, write_job


@pytest.fixture
def no_interrupt_flag():
    """INTERRUPTED is process-wide (set by the job's SIGINT handler): never leak it."""
    ledger.INTERRUPTED.clear()
    yield
    ledger.INTERRUPTED.clear()


def small_sweep(sweep: Path) -> Path:
    for num, k in enumerate((1, 4)):
        rec = record("cola", progressive_scheme(k), 0, progressive_value(k, 0))
        write_job(sweep, num, [f"reinit.k={k}"], rec)
    return sweep


# --- Ctrl-C and SIGTERM: one line, exit 130 / 143 ---------------------------------------------


def test_ctrl_c_of_a_single_run_says_one_line_with_what_was_kept(tmp_path, capsys):
    run_dir = tmp_path / "my run"
    job = HydraJob(run_dir, run_dir, ["task=rte", "reinit.k=2"], multirun=False)
    attempt = claim(run_dir, "abc123", run_dir, job.overrides)
    record_failure(Claimed(job, "abc123", attempt), KeyboardInterrupt())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("[reinitlab] interrupted (Ctrl-C): job abc123 stopped")
    assert f"recorded as interrupted in '{run_dir}'" in err[0]
    assert err[0].endswith(f"task=rte reinit.k=2 'hydra.run.dir={run_dir}'")  # quoted, runnable
    assert Ledger(run_dir).jobs[0].kind == "interrupted"


def test_ctrl_c_exits_130_and_sigterm_143_without_a_traceback(monkeypatch, no_interrupt_flag):
    """Lightning turns Ctrl-C into SystemExit(1); the entry point makes it 130. A single run's
    SIGTERM (recorded as killed, one line) ends as 143, not as an uncaught exception."""
    import reinitlab.train as train

    def interrupted_in_training():
        ledger.INTERRUPTED.set()  # what the job's SIGINT handler does
        raise SystemExit(1)

    monkeypatch.setattr(train, "_hydra_main", interrupted_in_training)
    with pytest.raises(SystemExit) as exit_:
        train.main()
    assert exit_.value.code == 130
    ledger.INTERRUPTED.clear()

    def failed():
        raise SystemExit(1)  # an ordinary failure keeps its code

    monkeypatch.setattr(train, "_hydra_main", failed)
    with pytest.raises(SystemExit) as exit_:
        train.main()
    assert exit_.value.code == 1

    def killed():
        raise ledger.Terminated("killed by SIGTERM")  # what the job's SIGTERM handler raises

    monkeypatch.setattr(train, "_hydra_main", killed)
    with pytest.raises(SystemExit) as exit_:  # not a traceback
        train.main()
    assert exit_.value.code == 143


@pytest.mark.slow
@needs_glue
@pytest.mark.parametrize("launcher", ["stacked", "gpus"])
def test_a_killed_sweep_says_one_line_per_job_and_one_summary(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true",
           "REINITLAB_FAKE_GPUS": "0,1", "REINITLAB_GPU_LOCK_DIR": str(tmp_path / "locks")}  # fmt: skip
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "model=tiny", "logger=none",
           f"data.glue_dir={GLUE}", "task=wnli", "data.max_train_samples=256",
           "trainer.max_epochs=50", "reinit.k=1", "seed=0", f"hydra/launcher={launcher}",
           f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    console = tmp_path / "console.txt"
    with open(console, "w") as f:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while not (sweep.is_dir() and Ledger(sweep).counts()["running"] == 2):
            assert time.monotonic() < deadline and proc.poll() is None, console.read_text()
            time.sleep(0.5)
        time.sleep(3)  # into training
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=180)
    out = console.read_text()
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert out.count(" killed: ") == 2  # one line per job
    assert out.count("reinitlab: the sweep was killed (SIGTERM)") == 1
    assert f"`reinitlab status {sweep}` lists them" in out
    assert {j.kind for j in Ledger(sweep).by_state("failed")} == {"killed"}


# --- status and report agree, and refuse what is not a sweep ---------------------------------


def test_a_truncated_plan_is_said_the_same_way_by_status_and_report(tmp_path, capsys):
    sweep = small_sweep(tmp_path / "sweep")
    (sweep / PLAN_FILENAME).write_text('{"jobs": [{"job_key": "ab')  # cut short
    problem = Ledger(sweep).plan_problem
    assert "is damaged: not valid JSON" in problem

    assert cli_main(["status", str(sweep)]) == 0
    status = capsys.readouterr().out
    assert "completed 2 | failed 0 | missing 0 | running 0 | corrupt 0" in status
    assert f"plan: {problem}" in status

    out = tmp_path / "rep"
    assert cli_main(["report", str(sweep), "--out", str(out), "--bootstrap", "200"]) == 0
    report = capsys.readouterr()
    assert (
        "2 runs done, 0 failed, 0 missing (not counted in 1 sweep(s) whose plan could not be "
        "read), 0 corrupt, 0 running" in report.out
    )
    assert f"reinitlab report: plan: {problem}" in report.err.splitlines()


def test_status_of_a_folder_that_is_no_sweep_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["status", str(empty)]) == 2
    assert f"'{empty}' is not a sweep directory: it is empty" in capsys.readouterr().err
    (empty / "notes.txt").write_text("hello")
    assert cli_main(["status", str(empty), "--json"]) == 2
    err = capsys.readouterr().err
    assert "is not a sweep directory: it holds no sweep_plan.json" in err
    assert cli_main(["status", str(small_sweep(tmp_path / "sweep"))]) == 0


def test_report_of_a_missing_dir_creates_nothing_and_says_the_same_with_or_without_out(
    tmp_path, capsys
):
    nowhere = tmp_path / "nowhere"
    assert cli_main(["report", str(nowhere)]) == 2
    without_out = capsys.readouterr().err
    assert cli_main(["report", str(nowhere), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == without_out
    assert f"'{nowhere}' is not a directory" in without_out
    assert not nowhere.exists() and not (tmp_path / "out").exists()


def test_report_into_a_read_only_sweep_dir_says_to_use_out(tmp_path, capsys, monkeypatch):
    sweep = small_sweep(tmp_path / "sweep")
    (sweep / "report").write_text("a file where the report folder would go")
    assert cli_main(["report", str(sweep), "--bootstrap", "200"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {sweep / 'report'}" in err and "set --out to a writable" in err
    (sweep / "report").unlink()

    # A read-only file system (simulated: these tests run as root, which chmod cannot stop).
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if sweep in (self, *self.parents):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert cli_main(["report", str(sweep), "--bootstrap", "200"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"reinitlab report: error: cannot write {sweep / 'report'}: Read-only file system; "
        "set --out to a writable directory"
    )
    out = tmp_path / "elsewhere"
    assert cli_main(["report", str(sweep), "--out", str(out), "--bootstrap", "200"]) == 0
    assert (out / "report.html").is_file()


def test_the_sweeps_hints_quote_a_dir_with_spaces(tmp_path, capsys):
    from hydra_plugins.reinitlab_plugins.sweeper import ReinitlabSweeper

    sweep = small_sweep(tmp_path / "my sweep")
    ReinitlabSweeper().print_summary(sweep)
    out = capsys.readouterr().out
    assert f"reinitlab report '{sweep}'" in out and f"make report SWEEP='{sweep}'" in out


def test_a_refused_k0_job_is_labelled_by_what_was_asked(tmp_path):
    from omegaconf import OmegaConf

    from hydra_plugins.reinitlab_plugins.sweeper import is_baseline, scheme_text

    def label(*overrides: str, layers: int | None) -> str:
        cfg = compose_cfg(tmp_path, "model=tiny", "task=rte", *overrides)
        return scheme_text(OmegaConf.to_container(cfg.reinit, resolve=True), layers)

    for layers in (3, None):  # the model's depth known, or not (it cannot be loaded)
        assert label("reinit.k=0", layers=layers) == "progressive k=0"
        k0 = compose_cfg(tmp_path, "model=tiny", "task=rte", "reinit.k=0")
        assert not is_baseline(k0.reinit, layers)
    assert label("reinit.k=4", layers=3) == "baseline"  # k=L+1: the untouched model, rightly
    # out of range, labelled as asked
    assert label("reinit.k=9", layers=3) == label("reinit.k=9", layers=None) == "k=9"


# --- data files checked before a sweep launches ----------------------------------------------


def glue_copy(tmp_path: Path, task_dir: str) -> Path:
    root = tmp_path / "glue"
    shutil.copytree(Path(GLUE) / task_dir, root / task_dir)
    return root


def spoil_line(path: Path, lineno: int, edit) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = edit(lines[lineno - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def problem(tmp_path: Path, *overrides: str) -> str | None:
    from hydra_plugins.reinitlab_plugins.sweeper import job_problem

    return job_problem(compose_cfg(tmp_path, "model=tiny", "logger=none", *overrides))


@pytest.fixture
def fresh_memo(monkeypatch):
    monkeypatch.setattr(content, "_checked", {})


@needs_glue
def test_a_sweep_over_a_tsv_with_a_bad_line_is_refused_before_any_job(tmp_path):
    root = glue_copy(tmp_path, "WNLI")
    train = root / "WNLI" / "train.tsv"
    spoil_line(train, 40, lambda line: line.rsplit("\t", 1)[0])  # the label field lost
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
    out = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "model=tiny", "logger=none",
         "task=wnli", "reinit.k=1,2", "seed=0,1", f"data.glue_dir={root}",
         f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    assert "the sweep is refused: 6 of 6 jobs are invalid, so none was launched" in out.stderr
    assert f"{train}, line 40: expected 4 tab-separated fields, found 3" in out.stderr
    assert out.stderr.count("line 40") == 1  # one reason for all six jobs
    assert not sweep.exists() and not (tmp_path / "cache").exists()
    assert "Traceback" not in out.stderr


@needs_glue
@pytest.mark.parametrize("score", ["nan", "99", "high"])
def test_an_stsb_label_out_of_range_refuses_the_job(tmp_path, fresh_memo, score):
    root = glue_copy(tmp_path, "STS-B")
    dev = root / "STS-B" / "dev.tsv"
    spoil_line(dev, 3, lambda line: line.rsplit("\t", 1)[0] + "\t" + score)
    why = problem(tmp_path, "task=stsb", "reinit.k=1", f"data.glue_dir={root}")
    assert why == (
        f"task stsb: {dev}, line 3: label {score!r} is not allowed; labels must be a finite "
        "number in [0, 5]"
    )


def test_malformed_squad_json_refuses_the_job(tmp_path, fresh_memo):
    squad = write_squad_dir(tmp_path / "squad")
    base = ("task=squad_v2", "reinit.k=1", f"data.squad_dir={squad}")
    assert problem(tmp_path, *base) is None
    train = squad / "train-v2.0.json"
    train.write_text(train.read_text()[:300])  # truncated
    assert problem(tmp_path, *base).startswith(f"SQuAD: {train} is not valid JSON (line ")
    train.write_text('{"version": "v2.0", "data": [{"title": "x"}]}')
    assert problem(tmp_path, *base) == (
        f"SQuAD: {train}: data[0] has no 'paragraphs'; is this the official format?"
    )


@needs_glue
def test_each_data_file_is_read_once_for_many_jobs(tmp_path, fresh_memo, monkeypatch):
    reads: list[Path] = []
    real_read = glue_io.read_tsv

    def counted(task, path):
        reads.append(Path(path))
        return real_read(task, path)

    monkeypatch.setattr(glue_io, "read_tsv", counted)
    root = glue_copy(tmp_path, "WNLI")
    task = load_task("wnli")
    data = {"glue_dir": str(root)}
    for _ in range(500):  # 500 jobs of one task: its train and dev file, read once each
        content.check_job_data([task], data)
    assert sorted(p.name for p in reads) == ["dev.tsv", "train.tsv"]

    train = root / "WNLI" / "train.tsv"
    spoil_line(train, 7, lambda line: line + "\textra")  # an edited file is read again ...
    for _ in range(500):
        with pytest.raises(
            ReinitlabError, match=r"line 7: expected 4 tab-separated fields, found 5"
        ):
            content.check_job_data([task], data)
    assert [p.name for p in reads[2:]] == ["train.tsv"]  # ... once, its error remembered

    # the sweeper's job check goes through the same memo: a sweep's jobs add no read
    assert problem(tmp_path, "task=wnli", "reinit.k=1", f"data.glue_dir={root}") is not None
    assert problem(tmp_path, "task=wnli", "reinit.k=2", f"data.glue_dir={root}") is not None
    assert len(reads) == 3


def test_squad_files_are_read_once(tmp_path, fresh_memo, monkeypatch):
    reads = []
    real_read = squad_io.read_squad_json
    monkeypatch.setattr(
        squad_io, "read_squad_json", lambda path, v: reads.append(path) or real_read(path, v)
    )
    squad = write_squad_dir(tmp_path / "squad")
    for k in (1, 2, 3):
        assert (
            problem(tmp_path, "task=squad_v2", f"reinit.k={k}", f"data.squad_dir={squad}") is None
        )
    assert sorted(Path(p).name for p in reads) == ["dev-v2.0.json", "train-v2.0.json"]
