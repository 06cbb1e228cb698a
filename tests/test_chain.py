"""Intermediate-task chains: encoder carry-over, the shared stage cache, sweeps, the transfer matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats

from reinitlab.errors import ReinitlabError
from reinitlab.training.record import RESULT_FILENAME

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from tests.helpers import GLUE, REPO, compose_cfg, needs_glue  # noqa: E402

FAST = (
    "model=tiny",
    "logger=none",
    "data.max_train_samples=32",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
)


def stage_files(cache_dir: Path) -> dict[str, dict]:
    """{stage key: its metadata} for every complete stage in the cache."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(cache_dir).glob("*.json"))}


def events(cache_dir: Path, key: str) -> list[str]:
    path = Path(cache_dir) / f"{key}.events.jsonl"
    return [json.loads(line)["event"] for line in path.read_text().splitlines()]


def load_stage(cache_dir: Path, key: str) -> dict[str, torch.Tensor]:
    return torch.load(Path(cache_dir) / f"{key}.pt", weights_only=True)["base_state"]


def assert_states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --------------------------------------------------------------------------- config / bad input


def test_default_is_direct_fine_tuning_and_preset_sweeps_the_matrix(tmp_path):
    from reinitlab.chain import plan_chain

    cfg = compose_cfg(tmp_path)
    assert list(cfg.intermediate) == [] and cfg.chain.reinit_when == "start"
    assert cfg.chain.cache_dir == f"{tmp_path / 'cache'}/stages"
    assert plan_chain(cfg).empty
    cfg = compose_cfg(tmp_path, "experiment=paper_intermediate")
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert params == {
        "seed": "0,1,2",
        "intermediate": "[],[cola],[mrpc],[rte],[wnli]",
        "task": "cola,mrpc,rte,wnli",
    }
    assert cfg.hydra.mode.name == "MULTIRUN"


def test_unknown_task_in_a_chain_fails_before_anything_loads(tmp_path, monkeypatch):
    import reinitlab.data.datamodule
    import reinitlab.training.models
    from reinitlab.train import train

    def must_not_run(*a, **k):
        raise AssertionError("data or weights were loaded before the chain was validated")

    monkeypatch.setattr(reinitlab.training.models, "load_model", must_not_run)
    monkeypatch.setattr(reinitlab.data.datamodule.GlueDataModule, "setup", must_not_run)
    cfg = compose_cfg(tmp_path, *FAST, "task=rte", "intermediate=[wnli,mnlii]")
    with pytest.raises(ReinitlabError, match=r"stage 2 names an unknown task 'mnlii'.*'wnli'"):
        train(cfg)
    cfg = compose_cfg(tmp_path, *FAST, "chain.reinit_when=middle")
    with pytest.raises(ReinitlabError, match=r"chain.reinit_when='middle'.*\['start', 'final'\]"):
        train(cfg)
    cfg = compose_cfg(tmp_path, *FAST, "intermediate=[wnli]", "+chain.stage_overrides.wnli.lr=1")
    with pytest.raises(ReinitlabError, match=r"stage_overrides.wnli.lr: unknown option"):
        train(cfg)
    cfg = compose_cfg(tmp_path, *FAST, "intermediate=[wnli]", "head.layer=1")
    with pytest.raises(ReinitlabError, match="head.layer cannot be combined"):
        train(cfg)
    assert not (tmp_path / "out" / RESULT_FILENAME).exists()


def test_a_chain_repeating_the_final_task_is_allowed_but_warned(tmp_path):
    from reinitlab.chain import ChainWarning, plan_chain

    cfg = compose_cfg(tmp_path, "task=rte", "intermediate=[wnli,rte]")
    with pytest.warns(ChainWarning, match=r"repeats the final task 'rte'"):
        plan = plan_chain(cfg)
    assert plan.tasks == ("wnli", "rte")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_chain(compose_cfg(tmp_path, "task=rte", "intermediate=[wnli]"))  # no warning


@needs_glue
def test_stage_identity_is_shared_across_final_tasks_and_follows_recipe_and_reinit(tmp_path):
    from reinitlab.chain import plan_chain
    from reinitlab.chain.cache import stage_key
    from reinitlab.chain.stages import stage_identity
    from reinitlab.training.seeding import resolve_seeds

    def key(*overrides, reinit=None):
        cfg = compose_cfg(tmp_path, *FAST, *overrides)
        plan = plan_chain(cfg)
        seeds = resolve_seeds(cfg.seed, cfg.seeds)
        model = OmegaConf.to_container(cfg.model, resolve=True)
        return [stage_key(stage_identity(model, plan, s.index, seeds, reinit)) for s in plan.stages]

    base = key("task=cola", "intermediate=[wnli,mrpc]")
    assert base[0].startswith("wnli-") and base[1].startswith("wnli+mrpc-")
    # the final task is not part of a stage's identity: a sweep's jobs share stages
    assert key("task=rte", "intermediate=[wnli,mrpc]") == base
    assert key("task=rte", "intermediate=[wnli]") == base[:1]
    # everything that changes the weights changes the key, from that stage on
    assert key("task=cola", "intermediate=[wnli,mrpc]", "seed=1")[0] != base[0]
    lr = key("task=cola", "intermediate=[wnli,mrpc]", "+chain.stage_overrides.mrpc.optim.lr=1e-4")
    assert lr[0] == base[0] and lr[1] != base[1]
    sub = key(
        "task=cola", "intermediate=[wnli,mrpc]", "+chain.stage_overrides.wnli.data.batch_size=8"
    )
    assert sub[0] != base[0] and sub[1] != base[1]
    assert key("task=cola", "intermediate=[wnli,mrpc]", reinit={"k": 2})[0] != base[0]
    # but not the job's own output dir
    assert key("task=cola", "intermediate=[wnli,mrpc]", "paths.output_dir=/elsewhere") == base


def test_stage_recipe_defaults_to_the_final_tasks_and_is_overridable(tmp_path):
    from reinitlab.chain import plan_chain

    cfg = compose_cfg(
        tmp_path,
        "task=rte",
        "intermediate=[wnli,mrpc]",
        "optim.lr=3e-5",
        "data.batch_size=16",
        "data.max_train_samples=100",
        "+chain.stage_overrides.mrpc.optim.lr=1e-5",
        "+chain.stage_overrides.mrpc.trainer.max_epochs=5",
        "+chain.stage_overrides.mrpc.data.max_train_samples=50",
    )
    wnli, mrpc = plan_chain(cfg).stages
    assert wnli.recipe.optim["lr"] == 3e-5 and wnli.recipe.trainer["max_epochs"] == 3
    assert wnli.recipe.batch_size == 16 and wnli.recipe.max_train_samples == 100
    assert mrpc.recipe.optim == {**wnli.recipe.optim, "lr": 1e-5}
    assert mrpc.recipe.trainer["max_epochs"] == 5 and mrpc.recipe.max_train_samples == 50
    assert mrpc.recipe.batch_size == 16 and mrpc.label == "stage2_mrpc"
    assert plan_chain(compose_cfg(tmp_path, "task=rte", "intermediate=wnli")).tasks == ("wnli",)


# ------------------------------------------------------------------------------ carry-over


class _Spy:
    """Snapshots of every model that starts fine-tuning (the GlueClassifier it is wrapped in)."""

    def __init__(self, monkeypatch):
        import reinitlab.chain
        import reinitlab.training.module
        from reinitlab.chain.stages import base_state

        self.starts: list[dict] = []
        self.after_chain: list[dict] = []
        spy = self
        original = reinitlab.training.module.GlueClassifier

        class SnapshotClassifier(original):
            def __init__(self, model, task, **kw):
                super().__init__(model, task, **kw)
                spy.starts.append(
                    {
                        "task": task.name,
                        "base": base_state(model),
                        "head": tuple(model.classifier.weight.shape),
                    }
                )

        real_run_chain = reinitlab.chain.run_chain

        def run_chain(cfg, plan, model, reinit_cb, seeds, logger=None):
            out = real_run_chain(cfg, plan, model, reinit_cb, seeds, logger)
            spy.after_chain.append(
                {"base": base_state(model), "head": model.classifier.weight.detach().clone()}
            )
            return out

        monkeypatch.setattr(reinitlab.training.module, "GlueClassifier", SnapshotClassifier)
        monkeypatch.setattr(reinitlab.chain, "run_chain", run_chain)


@needs_glue
def test_each_stage_starts_from_the_encoder_the_previous_one_ended_with(tmp_path, monkeypatch):
    from reinitlab.chain.cache import state_fingerprint
    from reinitlab.data.tasks import load_task
    from reinitlab.train import train
    from reinitlab.training.models import load_model

    spy = _Spy(monkeypatch)
    cfg = compose_cfg(tmp_path, *FAST, "task=wnli", "intermediate=[cola,stsb]", "logger=csv")
    record = train(cfg)
    cache = tmp_path / "cache" / "stages"
    assert record["intermediate"] == ["cola", "stsb"]
    s1, s2 = record["stages"]
    assert (s1["task"], s1["status"], s2["task"], s2["status"]) == (
        "cola",
        "trained",
        "stsb",
        "trained",
    )
    assert set(stage_files(cache)) == {s1["key"], s2["key"]}
    stage1, stage2 = load_stage(cache, s1["key"]), load_stage(cache, s2["key"])

    # models constructed: stage 1 (cola), the final model (wnli, before the chain), stage 2 (stsb)
    by_task = {s["task"]: s for s in spy.starts}
    pretrained = load_model(cfg.model, load_task("cola"), head_seed=0).base_model.state_dict()
    assert_states_equal(by_task["cola"]["base"], dict(pretrained))  # stage 1: pretrained BERT
    assert_states_equal(by_task["stsb"]["base"], stage1)  # stage 2 starts where stage 1 ended
    assert not torch.equal(
        stage1["encoder.layer.0.output.dense.weight"],
        pretrained["encoder.layer.0.output.dense.weight"],
    )
    assert_states_equal(spy.after_chain[0]["base"], stage2)  # the final task starts from stage 2
    # a fresh head per stage: cola 2 labels, stsb a regression (1 output), wnli 2 labels
    assert by_task["cola"]["head"] == (2, 32) and by_task["stsb"]["head"] == (1, 32)
    assert by_task["wnli"]["head"] == (2, 32)
    assert s2["init_fingerprint"] == state_fingerprint(stage1) == s1["final_fingerprint"]
    # the final head is the one load_model drew for wnli (the chain never touches it)
    wnli_head = load_model(cfg.model, load_task("wnli"), head_seed=record["seeds"]["train"])
    assert torch.equal(spy.after_chain[0]["head"], wnli_head.classifier.weight)

    # each stage's own dev metrics in the record and, prefixed, in the job's logger
    assert set(s1["final"]["metrics"]) == {"val/mcc", "val/primary"}
    assert set(s2["final"]["metrics"]) == {"val/pearson", "val/spearman", "val/primary"}
    assert set(record["final"]["metrics"]) == {"val/accuracy", "val/primary"}
    rows = pd.read_csv(next((tmp_path / "out" / "csv").rglob("metrics.csv")))
    assert rows["stage2_stsb/val/pearson"].dropna().tolist() == pytest.approx(
        [s2["final"]["metrics"]["val/pearson"]]
    )
    assert rows["stage1_cola/val/mcc"].dropna().tolist() == pytest.approx(
        [s1["final"]["metrics"]["val/mcc"]]
    )


@needs_glue
@pytest.mark.parametrize("when", ["start", "final"])
def test_reinit_when_start_or_final(tmp_path, monkeypatch, when):
    import reinitlab.training.reinit_callback
    from reinitlab.data.tasks import load_task
    from reinitlab.reinit import apply_reset, plan_reinit
    from reinitlab.train import train
    from reinitlab.training.models import load_model

    spy = _Spy(monkeypatch)
    calls = []
    real_apply = reinitlab.training.reinit_callback.apply_plan

    def counting_apply(*a, **k):
        calls.append(1)
        return real_apply(*a, **k)

    monkeypatch.setattr(reinitlab.training.reinit_callback, "apply_plan", counting_apply)
    cfg = compose_cfg(
        tmp_path,
        *FAST,
        "task=rte",
        "intermediate=[wnli]",
        "reinit.k=2",
        f"chain.reinit_when={when}",
    )
    record = train(cfg)
    model = load_model(cfg.model, load_task("wnli"), head_seed=0)
    pretrained = {k: v.clone() for k, v in model.base_model.state_dict().items()}
    targets = plan_reinit(model, {"name": "progressive", "k": 2})
    apply_reset(model, targets, std=0.02, seed=record["seeds"]["reinit"])
    reinitialized = dict(model.base_model.state_dict())
    stage_start = next(s for s in spy.starts if s["task"] == "wnli")["base"]
    expected_reset = sorted(t.name for t in targets)
    assert record["reset_tensors"] == expected_reset  # recorded either way
    if when == "start":
        assert_states_equal(stage_start, reinitialized)  # the chain ran on the reset model
        assert calls == []  # ... and the final stage did not reset again
    else:
        assert_states_equal(stage_start, pretrained)  # the chain ran on the pretrained model
        assert calls == [1]  # the reset came just before the final stage


# ------------------------------------------------------------------------------ the cache


@needs_glue
def test_a_corrupt_or_half_written_stage_is_detected_and_retrained(tmp_path):
    from reinitlab.chain.cache import CorruptStageWarning
    from reinitlab.train import train

    cfg = compose_cfg(tmp_path, *FAST, "task=rte", "intermediate=[wnli]")
    first = train(cfg)["stages"][0]
    cache = tmp_path / "cache" / "stages"
    key = first["key"]
    assert train(cfg)["stages"][0]["status"] == "reused"
    pt = cache / f"{key}.pt"
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    pt.write_bytes(bytes(data))
    with pytest.warns(CorruptStageWarning, match="checksum mismatch"):
        again = train(cfg)["stages"][0]
    assert again["status"] == "trained" and again["key"] == key
    (cache / f"{key}.json").unlink()  # the completeness marker never got written
    with pytest.warns(CorruptStageWarning, match="half-written"):
        assert train(cfg)["stages"][0]["status"] == "trained"
    assert events(cache, key) == ["trained", "reused", "corrupt", "trained", "corrupt", "trained"]
    # the retrained stage is the same training run: identical weights and metrics
    assert again["final"] == first["final"]
    assert again["final_fingerprint"] == first["final_fingerprint"]
    assert stage_files(cache)[key]["final_fingerprint"] == first["final_fingerprint"]


def run_train(*args: str, cwd: Path, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def common_args(tmp_path: Path, samples: int = 32, logger: str = "none") -> list[str]:
    return [
        "model=tiny",
        f"logger={logger}",
        f"data.max_train_samples={samples}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        f"data.glue_dir={GLUE}",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]


@needs_glue
def test_two_concurrent_jobs_needing_one_stage_train_it_once(tmp_path):
    """Both jobs are made to wait on the stage's lock together (the test holds it until both say
    they wait), so they really are concurrent; then one trains and the other reuses."""
    import time

    from reinitlab.chain import plan_chain
    from reinitlab.chain.cache import StageCache, stage_key
    from reinitlab.chain.stages import stage_identity
    from reinitlab.training.seeding import resolve_seeds

    args = common_args(tmp_path)
    cfg = compose_cfg(tmp_path, *args, "task=rte", "intermediate=[wnli]")
    plan = plan_chain(cfg)
    identity = stage_identity(
        OmegaConf.to_container(cfg.model, resolve=True),
        plan,
        1,
        resolve_seeds(cfg.seed, cfg.seeds),
        reinit=None,
    )
    key = stage_key(identity)
    cache = tmp_path / "cache" / "stages"
    logs = {task: tmp_path / f"{task}.stderr" for task in ("rte", "mrpc")}
    with StageCache(cache).locked(key):
        jobs = {
            task: run_train(
                *args,
                f"task={task}",
                "intermediate=[wnli]",
                f"hydra.run.dir={tmp_path / task}",
                cwd=tmp_path,
                stderr=logs[task].open("w"),
            )
            for task in ("rte", "mrpc")
        }
        deadline = time.time() + 300
        while not all(
            logs[t].exists()
            and f"stage {key}: another job holds it, waiting" in logs[t].read_text()
            for t in logs
        ):
            assert time.time() < deadline, [p.read_text()[-2000:] for p in logs.values()]
            assert all(job.poll() is None for job in jobs.values()), logs["rte"].read_text()[-2000:]
            time.sleep(0.2)
    for task, job in jobs.items():
        job.communicate(timeout=600)
        assert job.returncode == 0, logs[task].read_text()[-3000:]
    assert list(stage_files(cache)) == [key]
    assert sorted(events(cache, key)) == ["reused", "trained"]
    records = [json.loads((tmp_path / t / RESULT_FILENAME).read_text()) for t in ("rte", "mrpc")]
    statuses = sorted(r["stages"][0]["status"] for r in records)
    assert statuses == ["reused", "trained"]
    trainer = next(r for r in records if r["stages"][0]["status"] == "trained")
    reuser = next(r for r in records if r["stages"][0]["status"] == "reused")
    assert stage_files(cache)[key]["trained_by"] == trainer["config"]["paths"]["output_dir"]
    assert reuser["stages"][0]["final"] == trainer["stages"][0]["final"]


# ------------------------------------------------------------------------------ sweeps


def run_sweep(tmp_path: Path, name: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    sweep = tmp_path / name
    job = run_train(
        "-m",
        "task=wnli,rte",
        "intermediate=[],[wnli],[rte]",
        *common_args(tmp_path, logger="wandb"),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    out, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob(f"*/{RESULT_FILENAME}"))]
    return records, err


@pytest.fixture(scope="module")
def matrix_sweep(tmp_path_factory):
    if not GLUE.is_dir():
        pytest.skip(f"GLUE data not found at {GLUE}")
    tmp = tmp_path_factory.mktemp("matrix")
    records, err = run_sweep(tmp, "sweep1")
    return tmp, records, err


def _by_job(records):
    return {(r["task"], tuple(r["intermediate"])): r for r in records}


def test_matrix_sweep_trains_each_intermediate_stage_once(matrix_sweep):
    from tests.helpers.wandb_reader import find_run_files, read_run

    tmp, records, err = matrix_sweep
    jobs = _by_job(records)
    assert set(jobs) == {(t, c) for t in ("wnli", "rte") for c in ((), ("wnli",), ("rte",))}
    assert "repeats the final task 'wnli'" in err and "repeats the final task 'rte'" in err
    cache = tmp / "cache" / "stages"
    stages = stage_files(cache)
    assert sorted(m["task"] for m in stages.values()) == ["rte", "wnli"]  # one stage each
    for key in stages:
        assert events(cache, key) == ["trained", "reused"]  # two final tasks used each
    used = [s for r in records for s in r["stages"]]
    assert sorted(s["status"] for s in used) == ["reused", "reused", "trained", "trained"]
    for key, meta in stages.items():
        uses = [s for s in used if s["key"] == key]
        assert len(uses) == 2 and all(s["final"] == meta["final"] for s in uses)
        trained = next(s for s in uses if s["status"] == "trained")
        (job,) = [r for r in records if trained in r["stages"]]
        assert meta["trained_by"] == job["config"]["paths"]["output_dir"]
    assert all(r["stages"] == [] for (_, c), r in jobs.items() if c == ())

    # W&B: each job's run holds its stages' metrics, prefixed, as the record has them
    runs = [read_run(f) for f in find_run_files(tmp / "sweep1")]
    assert len(runs) == 6
    for run in runs:
        rec = jobs[(run["config"]["task"]["name"], tuple(run["config"]["intermediate"]))]
        for stage in rec["stages"]:
            k = f"stage1_{stage['task']}/val/accuracy"
            logged = [h[k] for h in run["history"] if k in h]
            assert logged == [pytest.approx(stage["final"]["metrics"]["val/accuracy"])]
        if not rec["stages"]:
            assert not any(k.startswith("stage") for h in run["history"] for k in h)


def test_a_second_identical_sweep_trains_no_stage(matrix_sweep):
    tmp, first, _ = matrix_sweep
    second, _ = run_sweep(tmp, "sweep2")
    cache = tmp / "cache" / "stages"
    for key in stage_files(cache):
        assert events(cache, key) == ["trained", "reused", "reused", "reused"]
    assert all(s["status"] == "reused" for r in second for s in r["stages"])
    # reused stages give the final task exactly the start it had when they were trained
    a, b = _by_job(first), _by_job(second)
    for job in a:
        assert b[job]["final"]["metrics"] == a[job]["final"]["metrics"]


def test_transfer_matrix_table_and_figure_from_the_tiny_sweep(matrix_sweep, tmp_path):
    """The report's transfer matrix (reinitlab.report.transfer) of a real sweep: cells, pivot,
    text, and `reinitlab report`'s transfer.csv and figures."""
    from reinitlab.report.build import build_report
    from reinitlab.report.collect import collect, runs_frame
    from reinitlab.report.transfer import format_transfer, transfer_cells, transfer_matrix

    tmp, records, _ = matrix_sweep
    cells = transfer_cells(runs_frame(collect([tmp / "sweep1"]).records, metric="final"))
    mean = transfer_matrix(cells)
    assert list(mean.index) == ["rte", "wnli"] and list(mean.columns) == ["none", "rte", "wnli"]
    jobs = _by_job(records)
    for (task, chain), rec in jobs.items():
        col = chain[0] if chain else "none"
        assert mean.loc[task, col] == rec["final"]["metrics"]["val/primary"]
        row = cells[(cells.task == task) & (cells.chain == col)].iloc[0]
        direct = jobs[(task, ())]["final"]["metrics"]["val/primary"]
        assert row.direct_mean == direct
        if chain:
            assert row.mean_delta == pytest.approx(rec["final"]["metrics"]["val/primary"] - direct)
            assert row.better_than_direct == (row.mean_delta > 0) and row.n_pairs == 1
    text = format_transfer(cells)
    assert text.shape == (2, 3) and text.loc["rte", "none"] == f"{mean.loc['rte', 'none']:.3f}"

    out = tmp_path / "report"
    report = build_report([tmp / "sweep1"], out, metric="final", n_resamples=200)
    written = pd.read_csv(out / "transfer.csv").set_index(["task", "chain"]).sort_index()
    assert len(written) == 6
    expected = cells.set_index(["task", "chain"]).sort_index()
    assert written["mean"].tolist() == pytest.approx(expected["mean"].tolist())
    assert np.allclose(written["mean_delta"], expected["mean_delta"], equal_nan=True)
    figures = sorted(
        (f for f in report.figures if Path(f["png"]).name.startswith("transfer_")),
        key=lambda f: Path(f["png"]).name,
    )
    assert [Path(f["png"]).name.split("_")[:2] for f in figures] == [
        ["transfer", "delta"],
        ["transfer", "tiny"],
    ]
    for f in figures:
        png, svg = Path(f["png"]), Path(f["svg"])
        assert png.parent == out / "figures" and svg.parent == out / "figures"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in svg.read_text()[:2000] and "intermediate task" in svg.read_text()


# ------------------------------------------------------------------------------ matrix statistics


def _record(task: str, chain, seed: int, primary: float) -> dict:
    """A minimal completed result record, as `reinitlab.report.collect.runs_frame` reads it."""
    val = {"epoch": 0, "step": 1, "metrics": {"val/primary": primary}}
    return {
        "status": "completed",
        "task": task,
        "model": "tiny",
        "num_layers": 3,
        "scheme": {"name": "none"},
        "seed": seed,
        "intermediate": list(chain),
        "final": val,
        "best": val,
    }


def _runs(rows) -> pd.DataFrame:
    from reinitlab.report.collect import runs_frame

    return runs_frame([_record(*r) for r in rows])


def _synthetic(n_seeds: int) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(n_seeds)
    direct = rng.normal(0.5, 0.05, n_seeds)
    chained = direct + rng.normal(0.03, 0.02, n_seeds)
    rows = [
        *(("rte", (), s, v) for s, v in enumerate(direct)),
        *(("rte", ("mnli",), s, v) for s, v in enumerate(chained)),
        *(("rte", ("mnli", "mrpc"), s, v - 0.2) for s, v in enumerate(chained)),
    ]
    return _runs(rows), {"direct": direct, "chained": chained}


@pytest.mark.parametrize("n_seeds", [3, 7])
def test_matrix_statistics_match_a_hand_computation(n_seeds):
    from reinitlab.report.transfer import transfer_cells, transfer_matrix

    runs, v = _synthetic(n_seeds)
    cells = transfer_cells(runs)
    assert list(transfer_matrix(cells).columns) == ["none", "mnli", "mnli→mrpc"]
    table = cells.set_index("chain")
    assert sorted(table.index) == ["mnli", "mnli→mrpc", "none"]
    x, d = v["chained"], v["chained"] - v["direct"]
    row = table.loc["mnli"]
    # the report's statistics (reinitlab.report.stats): Student's t intervals below 20 runs
    assert row["mean"] == pytest.approx(x.mean()) and row.n == n_seeds
    assert row.direct_mean == pytest.approx(v["direct"].mean())

    def t_interval(a):
        return stats.t.interval(0.95, len(a) - 1, a.mean(), stats.sem(a))

    assert (row.ci_low, row.ci_high) == pytest.approx(t_interval(x)) and row.ci_method == "t"
    assert row.ci_low < x.mean() < row.ci_high
    assert row.n_pairs == n_seeds and row.mean_delta == pytest.approx(d.mean())
    assert (row.delta_ci_low, row.delta_ci_high) == pytest.approx(t_interval(d))
    worse = table.loc["mnli→mrpc"]
    assert worse.mean_delta == pytest.approx(d.mean() - 0.2)
    test = stats.ttest_rel if n_seeds < 6 else stats.wilcoxon
    p = test(x, v["direct"]).pvalue
    p_worse = test(x - 0.2, v["direct"]).pvalue
    assert row.test == worse.test == ("paired t" if n_seeds < 6 else "wilcoxon")
    assert row.p == pytest.approx(p) and worse.p == pytest.approx(p_worse)
    # Holm across the matrix's two tested cells, by hand
    low, high = sorted([p, p_worse])
    holm_low, holm_high = min(1.0, 2 * low), max(min(1.0, 2 * low), high)
    assert row.p_holm == pytest.approx(holm_low if p <= p_worse else holm_high)
    assert worse.p_holm == pytest.approx(holm_low if p_worse < p else holm_high)
    assert bool(row.better_than_direct) is True
    assert bool(worse.better_than_direct) is False
    direct = table.loc["none"]
    assert direct.test == "" and np.isnan(direct.mean_delta) and np.isnan(direct.p_holm)


def test_matrix_pairs_by_seed_and_handles_degenerate_deltas():
    from reinitlab.report.collect import chain_name
    from reinitlab.report.transfer import transfer_cells

    forms = ([], (), None, ["a", "b"], ("a", "b"), "none", "wnli")
    assert [chain_name({"intermediate": x}) for x in forms] == [
        "none",
        "none",
        "none",
        "a→b",
        "a→b",
        "none",
        "wnli",
    ]
    assert chain_name({}) == "none"  # records from before chains existed
    assert chain_name({"intermediate": None, "config": {"intermediate": ["rte"]}}) == "rte"
    runs = _runs(
        [
            ("cola", (), 0, 0.1),
            ("cola", (), 1, 0.3),
            ("cola", ("wnli",), 1, 0.5),
            ("cola", ("wnli",), 2, 0.9),
            # binary-exact values: constant and zero deltas
            ("mrpc", (), 0, 0.25),
            ("mrpc", (), 1, 0.5),
            ("mrpc", ("wnli",), 0, 0.5),
            ("mrpc", ("wnli",), 1, 0.75),
            ("mrpc", ("rte",), 0, 0.25),
            ("mrpc", ("rte",), 1, 0.5),
        ]
    )
    cells = transfer_cells(runs).set_index(["task", "chain"])
    row = cells.loc[("cola", "wnli")]
    assert row.n == 2 and row.n_pairs == 1 and row.mean_delta == pytest.approx(0.2)  # seed 1
    assert row["mean"] == pytest.approx(0.7) and row.direct_mean == pytest.approx(0.2)
    assert row.test == "none (n=1 < 3)" and np.isnan(row.p) and np.isnan(row.p_holm)
    assert np.isnan(row.delta_ci_low)  # one pair: no interval
    # two pairs: no interval and no test either (one degree of freedom), whatever the deltas
    for chain, delta in (("wnli", 0.25), ("rte", 0.0)):
        two = cells.loc[("mrpc", chain)]
        assert two.n_pairs == 2 and two.mean_delta == delta
        assert np.isnan(two.delta_ci_low) and np.isnan(two.ci_low)
        assert two.test == "none (n=2 < 3)" and np.isnan(two.p) and np.isnan(two.p_holm)
    assert bool(cells.loc[("mrpc", "wnli")].better_than_direct) is True
    # degenerate deltas at a testable n: constant (no variance, t undefined) and all zero
    from reinitlab.report.stats import paired_test

    base = np.array([0.25, 0.5, 0.75])
    assert paired_test(base + 0.25, base)[0] == "paired t"
    assert np.isnan(paired_test(base + 0.25, base)[2])
    assert paired_test(base, base) == ("paired t", 0.0, 1.0)
    assert bool(cells.loc[("mrpc", "rte")].better_than_direct) is False


@pytest.mark.slow  # ~20 s; the list sweep itself is also exercised by the matrix sweep above
@needs_glue
def test_the_paper_preset_sweeps_lists_of_intermediate_tasks(tmp_path):
    """experiment=paper_intermediate with one final task and seed: its 5 chains, parsed as lists."""
    sweep = tmp_path / "preset"
    job = run_train(
        "-m",
        "experiment=paper_intermediate",
        "task=wnli",
        "seed=0",
        *common_args(tmp_path),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    _, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob(f"*/{RESULT_FILENAME}"))]
    assert sorted(tuple(r["intermediate"]) for r in records) == [
        (),
        ("cola",),
        ("mrpc",),
        ("rte",),
        ("wnli",),
    ]
    assert {r["task"] for r in records} == {"wnli"}
    assert all(len(r["stages"]) == len(r["intermediate"]) for r in records)
