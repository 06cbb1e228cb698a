"""Scheme configs and `experiment/` presets: they compose, expand to the intended sweeps (with
their baselines), are validated before weights load, and run end to end with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from transformers import BertConfig

from reinitlab.errors import ReinitlabError
from reinitlab.paths import config_dir
from reinitlab.training.record import RESULT_FILENAME
from tests.helpers import FAST, GLUE, compose_cfg, needs_glue
from tests.test_train import run_cli

PRESETS = ("paper_layers", "paper_heads", "blocks", "permute")
SCHEMES = ("none", "progressive", "layers", "block", "heads", "permute", "embeddings")
ONE_STEP = (
    "logger=none",
    "data.max_train_samples=32",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
)


def expand_sweep(params: list[str]) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper makes of these sweep overrides."""
    overrides = OverridesParser.create().parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def preset_jobs(tmp_path: Path, preset: str, *overrides: str) -> tuple[object, list[dict]]:
    """Compose the preset, resolve its sweeper params (the model-derived ones included) and
    expand them as `-m` would; each job as {key: value} (command-line overrides win)."""
    cfg = compose_cfg(tmp_path, f"experiment={preset}", *overrides)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert OmegaConf.select(cfg, "hydra.mode").name == "MULTIRUN"
    sweep = [f"{k}={v}" for k, v in params.items()] + [o for o in overrides if "," in o]
    jobs = []
    for job in expand_sweep(sweep):
        values = {}
        for o in OverridesParser.create().parse_overrides(job):
            values[o.key_or_group] = o.value()
        jobs.append(values)
    return cfg, jobs


def job_scheme(cfg, job: dict) -> dict:
    scheme = OmegaConf.to_container(cfg.reinit, resolve=True)
    scheme.update({k.split(".", 1)[1]: v for k, v in job.items() if k.startswith("reinit.")})
    return scheme


@pytest.mark.parametrize("name", [s for s in SCHEMES if s != "embeddings"])
def test_every_scheme_config_composes_with_its_defaults_as_the_baseline(tmp_path, name):
    from reinitlab.reinit import resolve_scheme, scheme_label
    from reinitlab.training.builder import scheme_params

    cfg = compose_cfg(tmp_path, "model=tiny", f"reinit={name}")
    assert cfg.reinit.name == name and cfg.reinit.pooler is False
    params = scheme_params(cfg.reinit)
    assert resolve_scheme({"name": name, **params}, 3, 4).is_baseline
    assert scheme_label(name, params, 3) == "baseline"


def test_embeddings_scheme_composes(tmp_path):
    from reinitlab.reinit import scheme_label
    from reinitlab.training.builder import scheme_params

    cfg = compose_cfg(tmp_path, "model=tiny", "reinit=embeddings", "reinit.mode=zero")
    assert scheme_label("embeddings", scheme_params(cfg.reinit), 3) == "embeddings zero"


def test_minilm_preset_sweeps_are_derived_from_the_model(tmp_path):
    """6 layers, 12 heads: k = 1..7; heads of layers 1, 2, 5, 6; blocks starting at 1..4."""
    cfg, jobs = preset_jobs(tmp_path, "paper_layers", "model=minilm-l6")
    assert {j["task"] for j in jobs} == {"rte", "stsb", "cola", "mrpc"} and len(jobs) == 28
    assert sorted({j["reinit.k"] for j in jobs}) == list(range(1, 8))  # 7 = the baseline

    cfg, jobs = preset_jobs(tmp_path, "paper_heads", "model=minilm-l6")
    assert cfg.reinit.name == "heads" and len(jobs) == 2 * (4 * 12 + 1)
    for task in ("cola", "stsb"):
        pairs = [j["reinit.heads"] for j in jobs if j["task"] == task]
        assert pairs.count(None) == 1  # the baseline
        assert sorted(tuple(p[0]) for p in pairs if p) == [
            (a, h) for a in (1, 2, 5, 6) for h in range(1, 13)
        ]

    cfg, jobs = preset_jobs(tmp_path, "blocks", "model=minilm-l6")
    assert cfg.reinit.width == 3 and len(jobs) == 4 * 5
    assert sorted({j["reinit.start"] for j in jobs}, key=str) == [1, 2, 3, 4, None]

    cfg, jobs = preset_jobs(tmp_path, "permute", "model=minilm-l6")
    assert len(jobs) == 20 and {j["reinit.permutation_seed"] for j in jobs} == {None, 1, 2, 3, 4}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("model", ["tiny", "minilm-l6", "tiny-distilbert", "tiny-mpnet"])
def test_every_preset_job_validates_against_the_model(tmp_path, preset, model):
    from reinitlab.reinit import resolve_scheme
    from reinitlab.training.models import load_config

    cfg, jobs = preset_jobs(tmp_path, preset, f"model={model}")
    config = load_config(cfg.model)
    baselines = 0
    for job in jobs:
        sel = resolve_scheme(
            job_scheme(cfg, job), config.num_hidden_layers, config.num_attention_heads, model
        )
        baselines += sel.is_baseline
    assert baselines == len({j["task"] for j in jobs})  # exactly one baseline per task


def test_the_papers_head_sweep_composes_as_written(tmp_path):
    """`-m task=cola,stsb reinit=heads reinit.layer=1,2,11,12 'reinit.head=range(1,13)'`:
    96 jobs, each composing to a heads scheme that is valid for BERT-base (12 × 12)."""
    from reinitlab.reinit import scheme_label
    from reinitlab.training.builder import scheme_params, validate_scheme

    sweep = ["task=cola,stsb", "reinit=heads", "reinit.layer=1,2,11,12", "reinit.head=range(1,13)"]
    jobs = expand_sweep(sweep)
    assert len(jobs) == 96
    labels = set()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for job in jobs:
            cfg = compose("train", overrides=job)
            assert cfg.reinit.name == "heads"
            validate_scheme(cfg.reinit, 12, "bert-base-cased", BertConfig())
            labels.add((cfg.task.name, scheme_label("heads", scheme_params(cfg.reinit), 12)))
    assert len(labels) == 96 and ("stsb", "L11H7") in labels and ("cola", "L1H12") in labels


@needs_glue
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("reinit=heads", "reinit.layer=1", "reinit.head=5"), r"4 attention heads"),
        (("reinit=heads", "reinit.layer=4", "reinit.head=1"), r"3 encoder layers"),
        (("reinit=block", "reinit.start=2"), r"start must be in 1\.\.1"),
        (("reinit=layers", "reinit.layers=[]"), r"non-empty list"),
        (("reinit=permute", "reinit.order=[1,3,3]"), r"not a permutation"),
        (("reinit=layers", "reinit.layers=[1]", "reinit.mode=mask"), r"only with reinit=heads"),
    ],
)
def test_bad_scheme_fails_before_weights_load(tmp_path, monkeypatch, overrides, message):
    import reinitlab.training.models
    from reinitlab.train import train

    def must_not_load(*a, **k):
        raise AssertionError("weights were loaded before the scheme was validated")

    monkeypatch.setattr(reinitlab.training.models, "load_model", must_not_load)
    cfg = compose_cfg(tmp_path, *FAST, *overrides)
    with pytest.raises(ReinitlabError, match=message):
        train(cfg)
    assert not (tmp_path / "out" / RESULT_FILENAME).exists()


def test_unsupported_model_type_fails_before_weights_load(tmp_path, monkeypatch):
    import reinitlab.training.models
    from reinitlab.train import train

    monkeypatch.setattr(reinitlab.training.models, "load_model", lambda *a, **k: 1 / 0)
    cfg = compose_cfg(tmp_path, *FAST, "reinit.k=2", "+model.model_type=gpt2")
    with pytest.raises(ReinitlabError, match=r"'gpt2'.*supported.*bert, roberta, electra"):
        train(cfg)


@needs_glue
@pytest.mark.parametrize(
    ("model", "overrides", "label", "plan"),
    [
        ("tiny", ("reinit=heads", "reinit.layer=2", "reinit.head=3", "reinit.mode=mask"),
         "L2H3 mask", {"layer_order": None, "masked_heads": [[2, 3]]}),
        ("tiny", ("reinit=permute", "reinit.order=[3,1,2]"),
         "perm 3,1,2", {"layer_order": [3, 1, 2], "masked_heads": []}),
        ("tiny-roberta", ("reinit=block", "reinit.start=2", "reinit.width=2", "reinit.parts=[ffn]"),
         "block 2-3 [ffn]", {"layer_order": None, "masked_heads": []}),
        ("tiny-distilbert", ("reinit=heads", "reinit.heads=[[1,1],[3,4]]", "reinit.mode=zero"),
         "L1H1+L3H4 zero", {"layer_order": None, "masked_heads": []}),
        ("tiny-mpnet", ("reinit=heads", "reinit.layer=3", "reinit.head=2", "reinit.mode=mask"),
         "L3H2 mask", {"layer_order": None, "masked_heads": [[3, 2]]}),
        ("tiny-mpnet", ("reinit=layers", "reinit.layers=[1,3]", "reinit.parts=[attention]"),
         "layers 1,3 [attention]", {"layer_order": None, "masked_heads": []}),
    ],
)  # fmt: skip
def test_scheme_runs_and_is_recorded(tmp_path, model, overrides, label, plan):
    from reinitlab.train import train

    cfg = compose_cfg(tmp_path, f"model={model}", "task=cola", *ONE_STEP, *overrides)
    record = train(cfg)
    on_disk = json.loads((tmp_path / "out" / RESULT_FILENAME).read_text())
    assert on_disk["scheme"]["label"] == record["scheme"]["label"] == label
    assert on_disk["reinit_plan"] == plan and record["steps"] == 1
    scheme = record["scheme"]
    assert scheme["name"] == cfg.reinit.name and scheme["pooler"] is False
    if cfg.reinit.name == "heads":
        assert {"layer", "head", "heads", "mode"} <= set(scheme)
    if plan["layer_order"] or plan["masked_heads"]:
        assert record["reset_tensors"] == []
    else:
        assert record["reset_tensors"] and record["reset_values"] > 0


def read_records(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob(RESULT_FILENAME))]


@needs_glue
def test_blocks_preset_runs_as_a_multirun(tmp_path):
    out = run_cli(
        "-m", "experiment=blocks", "model=tiny", "task=cola", f"data.glue_dir={GLUE}",
        f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *ONE_STEP,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    records = read_records(tmp_path / "sweep")
    assert sorted(r["scheme"]["label"] for r in records) == ["baseline", "block 1-3"]
    for r in records:
        assert r["steps"] == 1 and r["scheme"]["width"] == 3
        assert r["dev_sizes"] == {"validation": 1043}  # the full dev set is still loaded
    block = next(r for r in records if r["scheme"]["start"] == 1)
    assert {n.split(".")[3] for n in block["reset_tensors"]} == {"0", "1", "2"}
    assert next(r for r in records if r["scheme"]["start"] is None)["reset_tensors"] == []


@pytest.mark.slow
@needs_glue
@pytest.mark.parametrize(
    ("preset", "jobs"), [("paper_layers", 4), ("paper_heads", 13), ("permute", 5)]
)
def test_preset_runs_one_step_per_job(tmp_path, preset, jobs):
    out = run_cli(
        "-m", f"experiment={preset}", "model=tiny", "task=cola", f"data.glue_dir={GLUE}",
        f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *ONE_STEP,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    records = read_records(tmp_path / "sweep")
    assert len(records) == jobs and all(r["steps"] == 1 for r in records)
    labels = [r["scheme"]["label"] for r in records]
    assert labels.count("baseline") == 1 and len(set(labels)) == jobs


@pytest.mark.slow
@needs_glue
def test_issue_head_sweep_runs_with_tiny(tmp_path):
    out = run_cli(
        "-m", "task=cola,stsb", "reinit=heads", "reinit.layer=1,3", "reinit.head=range(1,3)",
        "model=tiny", f"data.glue_dir={GLUE}", f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", *ONE_STEP, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    records = read_records(tmp_path / "sweep")
    assert sorted((r["task"], r["scheme"]["label"]) for r in records) == sorted(
        [(t, f"L{a}H{h}") for t in ("cola", "stsb") for a in (1, 3) for h in (1, 2)]
        + [("cola", "baseline"), ("stsb", "baseline")]  # added by the default sweeper
    )
    for r in records:
        if r["scheme"]["label"] == "baseline":
            assert r["reset_tensors"] == []
            continue
        layer = r["scheme"]["layer"] - 1
        assert {n.split(".")[3] for n in r["reset_tensors"]} == {str(layer)}
