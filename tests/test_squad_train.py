"""SQuAD as a task: its spec and recipe, QA models of every family (fresh qa_outputs head,
reinit on the encoder), the QA module's scoring, job checks, and a tiny sweep into the report."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from reinitlab.data.squad_datamodule import SquadDataModule
from reinitlab.data.squad_features import prepare_features
from reinitlab.data.squad_io import load_squad_split
from reinitlab.data.tasks import load_task
from reinitlab.errors import ReinitlabError
from reinitlab.job import check_job
from reinitlab.paths import config_dir
from reinitlab.reinit import apply_plan, plan_scheme
from reinitlab.training.models import load_model, load_tokenizer
from reinitlab.training.qa_module import QuestionAnswering
from tests.helpers.compose import compose_cfg
from tests.helpers.squad_fixture import write_squad_dir

REPO = config_dir().parent


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory):
    return write_squad_dir(tmp_path_factory.mktemp("squad"))


def _model_spec(name):
    if name == "tiny-electra":  # no conf/model entry: the same random source, ELECTRA's layout
        config = dict(vocab_size=1000, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                      num_attention_heads=4, intermediate_size=64)  # fmt: skip
        return OmegaConf.create(
            {
                "name": name,
                "source": "random",
                "model_type": "electra",
                "init_seed": 7,
                "config": config,
            }  # fmt: skip
        )
    return OmegaConf.load(config_dir() / "model" / f"{name}.yaml")


def test_task_specs():
    v2, v1 = load_task("squad_v2"), load_task("squad")
    assert v2.is_qa and not v2.is_regression and v2.num_labels == 2
    assert v2.primary_metric == "f1" and v2.metrics == ("f1", "exact")
    assert (v2.qa.version, v2.qa.doc_stride, v2.qa.n_best, v2.qa.max_answer_length) == (
        "2.0", 128, 20, 30)  # fmt: skip
    assert v2.qa.null_threshold == 0.0 and v2.qa.with_negative
    assert v1.qa.version == "1.1" and not v1.qa.with_negative
    assert v2.hub_path == "rajpurkar/squad_v2" and v1.hub_path == "rajpurkar/squad"
    assert v2.validation[0].tsv == "dev-v2.0.json" and v1.train_tsv == "train-v1.1.json"


def test_recipe_defaults_per_task_and_overridable(tmp_path):
    cfg = compose_cfg(tmp_path, "task=squad_v2")
    assert (cfg.optim.lr, cfg.data.batch_size, cfg.data.max_length, cfg.trainer.max_epochs) == (
        3e-5, 12, 384, 2)  # fmt: skip
    cfg = compose_cfg(tmp_path, "task=squad_v2", "optim.lr=5e-5", "data.batch_size=8",
                      "trainer.max_epochs=3", "task.qa.doc_stride=64")  # fmt: skip
    assert (cfg.optim.lr, cfg.data.batch_size, cfg.trainer.max_epochs) == (5e-5, 8, 3)
    assert cfg.task.qa.doc_stride == 64
    cfg = compose_cfg(tmp_path, "task=cola")  # GLUE keeps the study's recipe
    assert (cfg.optim.lr, cfg.data.batch_size, cfg.data.max_length, cfg.trainer.max_epochs) == (
        2e-5, 32, 128, 3)  # fmt: skip


@pytest.mark.parametrize(
    "family", ["tiny", "tiny-roberta", "tiny-distilbert", "tiny-mpnet", "tiny-electra"]
)
def test_qa_model_fresh_head_and_encoder_reinit(family):
    task = load_task("squad_v2")
    spec = _model_spec(family)
    a = load_model(spec, task, head_seed=0)
    b = load_model(spec, task, head_seed=0)
    c = load_model(spec, task, head_seed=1)
    assert type(a).__name__.endswith("ForQuestionAnswering")
    assert a.qa_outputs.out_features == 2
    assert torch.equal(a.qa_outputs.weight, b.qa_outputs.weight)
    assert not torch.equal(a.qa_outputs.weight, c.qa_outputs.weight)  # drawn from the seed
    assert float(a.qa_outputs.weight.detach().abs().max()) <= 0.04 + 1e-7  # truncated at 2 sigma
    assert torch.count_nonzero(a.qa_outputs.bias) == 0
    enc_a = {n: p for n, p in a.named_parameters() if not n.startswith("qa_outputs")}
    enc_c = dict(c.named_parameters())
    assert all(torch.equal(p, enc_c[n]) for n, p in enc_a.items())  # same pretrained encoder
    before = {n: p.detach().clone() for n, p in a.named_parameters()}
    plan = plan_scheme(a, {"name": "progressive", "k": 2})
    apply_plan(a, plan, std=a.config.initializer_range, seed=0)
    changed = {n for n, p in a.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".layer.0." not in n for n in changed)
    assert not any(n.startswith("qa_outputs") or "embeddings" in n for n in changed)
    layer_names = {n for n in before if ".layer.1." in n or ".layer.2." in n}
    assert {n for n in layer_names if n.endswith("weight") and "LayerNorm" not in n
            and "layer_norm" not in n} <= changed  # fmt: skip


def test_qa_module_scores_gold_spans_and_null_perfectly(squad_dir):
    """Logits that peak at each question's gold span (CLS for unanswerable questions) score
    F1 = EM = 1 on every breakdown; moving every peak to CLS scores the NoAns share."""
    task = load_task("squad_v2")
    tok = load_tokenizer(_model_spec("tiny"))
    dev = load_squad_split("2.0", "validation", squad_dir)
    feats = prepare_features(tok, dev, max_length=128, stride=32)
    module = QuestionAnswering(
        load_model(_model_spec("tiny"), task, 0), task, dev=(dev, feats), remove_padding="pack"
    )
    assert module.remove_padding == "off"

    def run(null_everywhere: bool):
        for f in range(len(feats)):
            n = len(feats.input_ids[f])
            s, e = np.zeros(n, np.float32), np.zeros(n, np.float32)
            s[feats.start_positions[f]] += 10.0
            e[feats.end_positions[f]] += 10.0
            if null_everywhere:
                s[0] += 100.0
                e[0] += 100.0
            module.dev_start[f], module.dev_end[f] = s, e
        return module.evaluate()

    out = run(False)
    no_ans = sum(e.is_impossible for e in dev) / len(dev)
    assert out["f1"] == 1.0 and out["exact"] == 1.0
    assert out["HasAns_f1"] == 1.0 and out["NoAns_exact"] == 1.0 and out["questions"] == len(dev)
    out = run(True)
    assert out["exact"] == pytest.approx(no_ans) and out["HasAns_f1"] == 0.0
    # admitting every non-null answer by the null odds recovers all answerable ones
    assert out["best_f1"] == pytest.approx(1.0)


def test_datamodule_batches_and_cache(squad_dir, tmp_path):
    task = load_task("squad_v2")
    tok = load_tokenizer(_model_spec("tiny"))
    kwargs = dict(squad_dir=str(squad_dir), max_length=192, batch_size=4, cache_dir=tmp_path,
                  max_train_samples=10, subset_seed=3)  # fmt: skip
    data = SquadDataModule(task, tok, **kwargs)
    data.setup("fit")
    assert data.num_train_examples == 10 and len(data.val_examples) == 26
    assert data.cache_hits == {"train": False, "validation": False}
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "start_positions",
                          "end_positions", "labels"}  # fmt: skip
    again = SquadDataModule(task, tok, **kwargs)
    again.setup("fit")
    assert again.cache_hits == {"train": True, "validation": True}
    assert again.train_set.features.input_ids == data.train_set.features.input_ids
    assert again.val_features.offsets == data.val_features.offsets


def test_job_checks(tmp_path, squad_dir):
    base = ("model=tiny", "logger=none", "task=squad_v2", f"data.squad_dir={squad_dir}")
    spec = check_job(compose_cfg(tmp_path, *base))
    assert spec.task.is_qa
    with pytest.raises(ReinitlabError, match="is not a directory"):
        check_job(compose_cfg(tmp_path, *base[:3], f"data.squad_dir={tmp_path / 'none'}"))
    assert check_job(compose_cfg(tmp_path, *base, "intermediate=[rte]")).chain.tasks == ("rte",)
    with pytest.raises(ReinitlabError, match="stage 1 is 'squad_v2', a question-answering"):
        check_job(compose_cfg(tmp_path, "model=tiny", "logger=none", "task=rte",
                              "intermediate=[squad_v2]"))  # fmt: skip
    with pytest.raises(ReinitlabError, match="head.layer=1 is for sequence classifiers"):
        check_job(compose_cfg(tmp_path, *base, "head.layer=1", "reinit.k=1"))
    with pytest.raises(
        ReinitlabError, match="doc_stride=128 must be smaller than data.max_length=100"
    ):
        check_job(compose_cfg(tmp_path, *base, "data.max_length=100"))
    with pytest.raises(ReinitlabError, match="task.qa.doc_stride=0"):
        check_job(compose_cfg(tmp_path, *base, "task.qa.doc_stride=0"))


@pytest.mark.slow
def test_tiny_squad_sweep_into_the_report(tmp_path, squad_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    sweep = tmp_path / "multirun" / "squad"
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "model=tiny", "logger=none",
           "task=squad_v2", "reinit.k=1,2", f"data.squad_dir={squad_dir}",
           "data.max_train_samples=8", "trainer.max_epochs=1", "data.max_length=128",
           "task.qa.doc_stride=32", f"data.cache_dir={tmp_path / 'cache'}",
           f"hydra.sweep.dir={sweep}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "report"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "reinitlab.cli",
            "report",
            str(sweep),
            "--out",
            str(out),
            "--bootstrap",
            "200",
        ],  # fmt: skip
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert "3 runs done, 0 failed, 0 missing" in cli.stdout
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["label"]) == {"k=1", "k=2", "baseline"} and set(runs["task"]) == {"squad_v2"}
    assert set(runs["primary_metric"]) == {"f1"}
    assert runs["primary"].between(0, 1).all()
    records = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(records) == 3
    for rec in records:
        assert rec["primary_metric"] == "f1" and rec["dev_sizes"] == {"validation": 26}
        assert rec["train_size"] == 8
        final = rec["final"]["metrics"]
        assert final["val/primary"] == final["val/f1"] and final["val/questions"] == 26
        assert 0 <= final["val/exact"] <= final["val/f1"] <= 1
    recipe = pd.read_csv(out / "recipe.csv", dtype=str).iloc[0]  # names run_qa's recipe
    assert (float(recipe["lr"]), recipe["epochs"], recipe["batch size"]) == (3e-5, "1", "12")
    assert (recipe["max length"], recipe["doc stride"]) == ("128", "32")
    deltas = pd.read_csv(out / "deltas.csv")
    base = runs[runs["label"] == "baseline"]["primary"].item()
    for _, row in deltas.iterrows():
        assert row["delta"] == pytest.approx(row["primary"] - base)


def test_probe_command_refuses_qa(tmp_path, squad_dir):
    from reinitlab.probe import probe_from_config

    cfg = compose_cfg(tmp_path, "model=tiny", "logger=none", "task=squad_v2",
                      f"data.squad_dir={squad_dir}")  # fmt: skip
    with pytest.raises(ReinitlabError, match="task=squad_v2 is question answering; linear probes"):
        probe_from_config(cfg)


@pytest.mark.slow
def test_debug_fast_smoke_run_on_squad(tmp_path, squad_dir):
    """debug=fast caps training at 4 batches, also when 64 questions make more windows."""
    from reinitlab.train import train

    cfg = compose_cfg(tmp_path, "model=tiny", "task=squad_v2", f"data.squad_dir={squad_dir}",
                      "debug=fast")  # fmt: skip
    record = train(cfg)
    assert record["steps"] == 4 and record["train_size"] == 26
    assert record["final"]["metrics"]["val/questions"] == 26  # 2 dev batches of 128 hold all


@pytest.mark.slow
def test_squad_as_the_final_task_of_a_chain(tmp_path, squad_dir, glue_dir):
    """BERT -> RTE -> SQuAD 2.0: the QA model starts from the RTE stage's encoder (all of it;
    only the classifier's pooler stays behind) with its own fresh qa_outputs head."""
    from reinitlab.chain import run_chain
    from reinitlab.chain.cache import StageCache
    from reinitlab.job import build_job
    from reinitlab.train import train

    args = ("model=tiny", "logger=none", "task=squad_v2", f"data.squad_dir={squad_dir}",
            f"data.glue_dir={glue_dir}", "intermediate=[rte]", "data.max_train_samples=8",
            "trainer.max_epochs=1", "data.max_length=128", "task.qa.doc_stride=32")  # fmt: skip
    cfg = compose_cfg(tmp_path, *args)
    job = build_job(cfg)
    head = job.model.qa_outputs.weight.detach().clone()
    stages = run_chain(cfg, job.spec.chain, job.model, job.reinit_cb, job.spec.seeds)
    assert [s["task"] for s in stages] == ["rte"] and stages[0]["status"] == "trained"
    cached = torch.load(StageCache(job.spec.chain.cache_dir).paths(stages[0]["key"])["pt"])
    stage_state = cached["base_state"]
    base = job.model.base_model.state_dict()
    assert set(stage_state) - set(base) == {k for k in stage_state if k.startswith("pooler.")}
    assert all(torch.equal(base[k].cpu(), stage_state[k]) for k in base)
    assert torch.equal(job.model.qa_outputs.weight, head)  # the QA head is the job's own
    record = train(compose_cfg(tmp_path, *args))  # the whole job, the stage now reused
    assert record["intermediate"] == ["rte"] and record["stages"][0]["status"] == "reused"
    assert record["primary_metric"] == "f1" and record["final"]["metrics"]["val/questions"] == 26
