"""The one job builder: train(), a chain's stages and `reinitlab probe` set a run up the same
way (the data module's subset, shuffle seed and length grouping; the model and its seeded
head), because they all call it."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from reinitlab.chain.plan import plan_chain
from reinitlab.job import build_job, check_job
from reinitlab.training.builder import build_data, build_model
from tests.helpers import compose_cfg, needs_glue

OVERRIDES = (
    "model=tiny",
    "task=rte",
    "logger=none",
    "data.max_train_samples=48",
    "data.group_by_length=true",
    "data.batch_size=8",
    "seed=3",
)


def data_fingerprint(data) -> dict:
    """What decides the batches a run trains on."""
    loader = data.train_dataloader()
    return {
        "n": data.num_train_examples,
        "batch_size": data.batch_size,
        "group_by_length": data.group_by_length,
        "shuffle_seed": data.shuffle_seed,
        "subset_seed": data.subset_seed,
        "first_batch": next(iter(loader))["input_ids"].tolist(),
    }


@needs_glue
def test_train_chain_stage_and_probe_build_the_same_run(tmp_path):
    cfg = compose_cfg(tmp_path, *OVERRIDES)
    job = build_job(cfg)  # what train() fits

    # reinitlab probe: check_job + build_data + build_model, as reinitlab/probe.py does
    spec = check_job(cfg)
    probe_data = build_data(spec.task, job.data.tokenizer, cfg.data, spec.seeds)
    probe_model = build_model(cfg.model, spec.task, spec.seeds)

    # a chain stage on the same task: plan.data + the stage recipe, as chain/stages.py does
    chained = compose_cfg(tmp_path, *OVERRIDES, "intermediate=[rte]", "task=wnli")
    plan = plan_chain(chained)
    (stage,) = plan.stages
    stage_data = {
        **plan.data,
        "batch_size": stage.recipe.batch_size,
        "max_train_samples": stage.recipe.max_train_samples,
    }
    chain_data = build_data(stage.task, job.data.tokenizer, stage_data, spec.seeds)
    chain_model = build_model(OmegaConf.to_container(cfg.model), stage.task, spec.seeds)

    expected = data_fingerprint(job.data)
    assert expected["group_by_length"] is True and expected["shuffle_seed"] == spec.seeds["train"]
    assert data_fingerprint(probe_data) == expected
    assert data_fingerprint(chain_data) == expected  # stages no longer drop grouping/shuffle
    want = job.model.state_dict()
    for model in (probe_model, chain_model):
        got = model.state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)  # same weights, same fresh head
