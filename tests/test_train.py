"""End-to-end jobs: config composition, single runs (tiny, MiniLM), a multirun sweep, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reinitlab.data.tasks import available_tasks
from reinitlab.errors import ReinitlabError
from reinitlab.training.record import RESULT_FILENAME

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from tests.helpers import FAST, GLUE, REPO, compose_cfg, needs_glue  # noqa: E402


@pytest.mark.parametrize("task", available_tasks())
@pytest.mark.parametrize("model", ["bert-base-cased", "bert-base-uncased", "minilm-l6", "tiny"])
def test_every_task_and_model_config_composes(tmp_path, task, model):
    cfg = compose_cfg(tmp_path, f"task={task}", f"model={model}")
    assert cfg.task.name == task and cfg.model.name == model
    assert cfg.reinit.name == "progressive" and cfg.reinit.k is None  # default: reinit nothing
    recipe = (cfg.optim.lr, cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.max_length)
    qa = task in ("squad", "squad_v2")  # run_qa's recipe; GLUE: the study's
    assert recipe == ((3e-5, 12, 2, 384) if qa else (2e-5, 32, 3, 128))
    assert cfg.data.pad_to_max_length is False


def test_default_model_is_the_studys(tmp_path):
    cfg = compose_cfg(tmp_path)
    assert cfg.model.name == "bert-base-cased" and cfg.logger.offline is True


def test_sweep_dirs_cannot_collide(tmp_path):
    from omegaconf import OmegaConf

    a = compose_cfg(tmp_path)
    b = compose_cfg(tmp_path)
    sweep_a = OmegaConf.select(a, "hydra.sweep.dir")
    sweep_b = OmegaConf.select(b, "hydra.sweep.dir")
    assert sweep_a.startswith("multirun/") and sweep_a != sweep_b


@needs_glue
def test_tiny_run_writes_a_valid_result_record(tmp_path):
    from reinitlab.data.tasks import load_task
    from reinitlab.reinit import progressive_targets
    from reinitlab.train import train
    from reinitlab.training.models import load_model

    cfg = compose_cfg(tmp_path, *FAST, "task=cola", "reinit.k=2", "seed=3")
    record = train(cfg)
    on_disk = json.loads((tmp_path / "out" / RESULT_FILENAME).read_text())
    assert on_disk["record_version"] == 1
    assert {k: on_disk[k] for k in record} == json.loads(json.dumps(record, default=str))
    assert record["status"] == "completed" and record["task"] == "cola"
    assert record["model"] == "tiny" and record["num_layers"] == 3
    assert record["scheme"] == {
        "name": "progressive",
        "label": "k=2",
        "k": 2,
        "parts": None,
        "mode": "reinit",
        "pooler": False,
    }
    assert record["seed"] == 3 and set(record["seeds"]) == {"train", "reinit", "subset"}
    assert record["train_size"] == 64 and record["dev_sizes"] == {"validation": 1043}
    assert record["steps"] == 2 and len(record["history"]) == 1  # 64 examples / batch 32
    metrics = record["final"]["metrics"]
    assert set(metrics) == {"val/mcc", "val/primary"}
    assert metrics["val/primary"] == metrics["val/mcc"] and -1 <= metrics["val/mcc"] <= 1
    assert record["best"] == record["final"]
    model = load_model(cfg.model, load_task("cola"), head_seed=0)
    expected = sorted(t.name for t in progressive_targets(model, 2))
    assert record["reset_tensors"] == expected
    assert all(".layer.1." in n or ".layer.2." in n for n in expected)
    assert record["versions"]["torch"] and record["config"]["reinit"]["k"] == 2
    assert record["wall_time_s"] > 0


@needs_glue
def test_reinit_none_and_pinned_seeds_are_recorded(tmp_path):
    from reinitlab.train import train
    from reinitlab.training.seeding import derive_seed

    cfg = compose_cfg(tmp_path, *FAST, "task=wnli", "reinit=none", "seed=7", "seeds.reinit=11")
    record = train(cfg)
    assert record["reset_tensors"] == [] and record["scheme"]["label"] == "baseline"
    assert record["seeds"] == {
        "train": derive_seed(7, "train"),
        "reinit": 11,
        "subset": derive_seed(7, "subset"),
    }


@needs_glue
def test_minilm_run_few_steps(tmp_path):
    from reinitlab.train import train

    cfg = compose_cfg(
        tmp_path,
        "model=minilm-l6",
        "task=stsb",
        "logger=csv",
        "reinit.k=6",
        "data.max_train_samples=32",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
    )
    record = train(cfg)
    assert record["num_layers"] == 6 and record["steps"] == 1
    assert record["reset_tensors"][0].startswith("bert.encoder.layer.5.")
    assert set(record["final"]["metrics"]) == {"val/pearson", "val/spearman", "val/primary"}
    assert record["dev_sizes"] == {"validation": 1500}
    assert math.isfinite(record["final"]["metrics"]["val/pearson"])
    csv_metrics = list((tmp_path / "out" / "csv").rglob("metrics.csv"))
    assert csv_metrics and "val/pearson" in csv_metrics[0].read_text().splitlines()[0]


@needs_glue
def test_plateau_trainer_stops_and_reports_the_best_epoch(tmp_path):
    from reinitlab.train import train

    cfg = compose_cfg(
        tmp_path,
        *FAST,
        "task=wnli",
        "trainer=plateau",
        "trainer.max_epochs=8",
        "early_stopping.patience=1",
    )
    assert cfg.trainer.max_epochs == 8 and cfg.early_stopping.patience == 1
    record = train(cfg)
    history = record["history"]
    assert record["stopped_early"] is True and len(history) < 8
    best_value = max(h["metrics"]["val/primary"] for h in history)
    assert record["best"]["metrics"]["val/primary"] == best_value
    assert record["best"] == next(h for h in history if h["metrics"]["val/primary"] == best_value)


@needs_glue
def test_k_out_of_range_fails_before_loading_weights(tmp_path, monkeypatch):
    import reinitlab.training.models
    from reinitlab.train import train

    def must_not_load(*a, **k):
        raise AssertionError("weights were loaded before the scheme was validated")

    monkeypatch.setattr(reinitlab.training.models, "load_model", must_not_load)
    for k in (0, 5):
        cfg = compose_cfg(tmp_path, *FAST, f"reinit.k={k}")
        with pytest.raises(ReinitlabError, match=r"has 3 encoder layers.*1\.\.4"):
            train(cfg)
    assert not (tmp_path / "out" / RESULT_FILENAME).exists()


def test_missing_data_dir_and_unreadable_tsv(tmp_path):
    from reinitlab.train import train

    cfg = compose_cfg(tmp_path, *FAST, f"data.glue_dir={tmp_path / 'nowhere'}")
    with pytest.raises(ReinitlabError, match="data.glue_dir"):
        train(cfg)
    bad = tmp_path / "glue" / "WNLI"
    bad.mkdir(parents=True)
    (bad / "train.tsv").write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\t\xff\xfe\tb\t1\n")
    (bad / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
    cfg = compose_cfg(tmp_path, *FAST, "task=wnli", f"data.glue_dir={tmp_path / 'glue'}")
    with pytest.raises(ReinitlabError, match="cannot read .*train.tsv"):
        train(cfg)
    assert not (tmp_path / "out" / RESULT_FILENAME).exists()


def run_cli(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_bad_input_fails_fast_with_a_clear_message(tmp_path):
    out = run_cli("task=colaa", "model=tiny", cwd=tmp_path)
    assert out.returncode != 0
    assert "task/colaa" in out.stderr and "cola" in out.stderr  # Hydra lists the options
    out = run_cli("model=tiny", "reinit.k=9", f"data.glue_dir={GLUE}", "logger=none", cwd=tmp_path)
    assert out.returncode == 2
    assert "reinit.k=9 is out of range" in out.stderr and "3 encoder layers" in out.stderr
    assert not list(tmp_path.rglob(RESULT_FILENAME))


@needs_glue
def test_multirun_sweep_writes_one_record_and_one_wandb_run_per_job(tmp_path):
    from tests.helpers.wandb_reader import find_run_files, read_run

    sweep = tmp_path / "sweep"
    out = run_cli(
        "-m",
        "task=cola,stsb",
        "reinit.k=range(1,4)",
        "model=tiny",
        "logger=wandb",
        f"data.glue_dir={GLUE}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.max_train_samples=32",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.add_baselines=false",  # the added baselines are test_sweeps' subject
        cwd=tmp_path,
        env_extra={"WANDB_MODE": "offline"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob(f"*/{RESULT_FILENAME}"))]
    assert len(records) == 6
    assert len({r["config"]["paths"]["output_dir"] for r in records}) == 6
    assert sorted((r["task"], r["scheme"]["k"]) for r in records) == [
        (t, k) for t in ("cola", "stsb") for k in (1, 2, 3)
    ]
    # Two tiny-data runs of one sweep tokenized once per split: later jobs hit the cache.
    assert out.stderr.count("(cached)") == 4 and out.stderr.count("(tokenized)") == 2
    runs = [read_run(f) for f in find_run_files(sweep)]
    assert len(runs) == 6 and len({r["run_id"] for r in runs}) == 6
    assert {r["group"] for r in runs} == {sweep.name}
    assert {r["job_type"] for r in runs} == {"progressive"}
    by_job = sorted((r["config"]["task"]["name"], r["config"]["reinit"]["k"]) for r in runs)
    assert by_job == sorted((r["task"], r["scheme"]["k"]) for r in records)
    for run in runs:
        # each run holds its own job's final metric, exactly as its record has it
        rec = next(
            r
            for r in records
            if (r["task"], r["scheme"]["k"])
            == (run["config"]["task"]["name"], run["config"]["reinit"]["k"])
        )
        primary = f"val/{rec['primary_metric']}"
        logged = [h[primary] for h in run["history"] if primary in h]
        assert logged == [pytest.approx(rec["final"]["metrics"][primary])]
        assert run["exit_code"] == 0


def test_hub_model_offline_points_to_the_offline_model(monkeypatch):
    from reinitlab.training.models import load_config

    spec = {"name": "bert-base-cased", "source": "hub", "name_or_path": "bert-base-cased"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReinitlabError, match=r"hub is switched off.*model=minilm-l6"):
        load_config(spec)
    # without the switch, an unreachable hub is found out in one quick request, not retries
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    with pytest.raises(ReinitlabError, match=r"hub is unreachable \(http://127.0.0.1:9.*minilm"):
        load_config(spec)
