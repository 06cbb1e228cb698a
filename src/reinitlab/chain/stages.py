"""Run the intermediate stages of a chain (train or reuse each) and hand the encoder to the final task.

Each stage fine-tunes the whole model with its own fresh task head (label counts differ; STS-B
is a regression); the base model (embeddings, encoder, pooler) carries over from stage to stage
and into the final task's model. Stages come from the shared `StageCache` when an identical one
was trained before (by this sweep, an earlier one, or a concurrent job).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from reinitlab.chain.cache import StageCache, stage_key, state_fingerprint
from reinitlab.chain.plan import ChainPlan, StagePlan
from reinitlab.errors import ReinitlabError
from reinitlab.reinit import ResetTarget, apply_reset


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the base model's (encoder + pooler) weights."""
    return {k: v.detach().cpu().clone() for k, v in model.base_model.state_dict().items()}


def base_targets(model: nn.Module, targets: list[ResetTarget]) -> list[ResetTarget]:
    """The reinit targets inside the base model (the task head is fresh in every stage anyway)."""
    prefix = f"{model.base_model_prefix}."
    return [t for t in targets if t.name.startswith(prefix)]


def _data_source(task, glue_dir: str | None) -> str:
    """The training data in a stage's identity: local TSV name and size, or the hub."""
    from reinitlab.data.glue_io import resolve_glue_dir, task_dir

    root = resolve_glue_dir(glue_dir)
    if root is None:
        return f"hub:{task.hub_path}/{task.hub_name}"
    path = task_dir(task, root) / task.train_tsv
    size = path.stat().st_size if path.is_file() else None
    return f"tsv:{task.glue_dir_name}/{task.train_tsv}:{size}"


def stage_identity(
    model_spec: dict[str, Any],
    plan: ChainPlan,
    upto: int,
    seeds: dict[str, int],
    reinit: dict[str, Any] | None,
) -> dict[str, Any]:
    """Everything that determines stage `upto`'s weights (and nothing job-specific)."""
    if OmegaConf.is_config(model_spec):
        model_spec = OmegaConf.to_container(model_spec, resolve=True)
    return {
        "model": model_spec,
        "tokenization": {
            "max_length": plan.data["max_length"],
            "pad_to_max_length": plan.data["pad_to_max_length"],
        },
        "group_by_length": plan.data["group_by_length"],  # the shuffle seed: seeds["train"]
        "reinit": reinit,
        "stages": [
            {
                "task": s.task.name,
                "data": _data_source(s.task, plan.data["glue_dir"]),
                "recipe": s.recipe.identity(),
                "seed": seeds["train"],
                "subset_seed": seeds["subset"] if s.recipe.max_train_samples is not None else None,
            }
            for s in plan.stages[:upto]
        ],
    }


def fit_stage(
    stage: StagePlan,
    model_spec: DictConfig | dict,
    plan: ChainPlan,
    tokenizer,
    init_state: dict[str, torch.Tensor] | None,
    seeds: dict[str, int],
    reinit: tuple[list[ResetTarget], float, int] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Fine-tune one stage: (final base-model weights, the stage's metadata).

    `init_state` None = the pretrained model; `reinit` = (targets, std, seed) to reset before
    training (the `chain.reinit_when=start` case, on stage 1).
    """
    from reinitlab.training.builder import build_data, build_model, build_trainer
    from reinitlab.training.module import GlueClassifier
    from reinitlab.training.record import best_and_final

    started = time.time()
    task, recipe = stage.task, stage.recipe
    stage_data = {
        **plan.data,
        "batch_size": recipe.batch_size,
        "max_train_samples": recipe.max_train_samples,
    }
    data = build_data(task, tokenizer, stage_data, seeds)
    model = build_model(model_spec, task, seeds)
    if init_state is not None:
        model.base_model.load_state_dict(init_state)
    reset_counts: dict[str, int] = {}
    if reinit is not None:
        targets, std, seed = reinit
        reset_counts = apply_reset(model, base_targets(model, targets), std=std, seed=seed)
    init_fp = state_fingerprint(model.base_model.state_dict())
    module = GlueClassifier(model, task, **recipe.optim)
    trainer = build_trainer(recipe.trainer, [], recipe.early_stopping)
    trainer.fit(module, datamodule=data)
    best, final = best_and_final(module.history)
    if final is None:
        raise RuntimeError(f"stage {stage.label} ended without a validation run")
    state = base_state(model)
    meta = {
        "stage": stage.index,
        "task": task.name,
        "primary_metric": task.primary_metric,
        "num_labels": task.num_labels,
        "train_size": data.num_train_examples,
        "final": final,
        "best": best,
        "history": module.history,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "reset_counts": reset_counts,
        "init_fingerprint": init_fp,
        "final_fingerprint": state_fingerprint(state),
        "wall_time_s": round(time.time() - started, 2),
    }
    return state, meta


def log_stage_metrics(logger, label: str, history: list[dict]) -> None:
    """Every validation of a stage into the job's logger, prefixed: `stage1_wnli/val/accuracy`."""
    if logger is None:
        return
    for h in history:
        metrics = {f"{label}/{k}": v for k, v in h["metrics"].items()}
        metrics[f"{label}/epoch"] = h["epoch"]
        logger.log_metrics(metrics, step=h["step"])


def _reinit_identity(cfg: DictConfig, targets: list[ResetTarget], seed: int) -> dict | None:
    if not targets:
        return None  # a scheme that resets nothing is the pretrained model: share its stages
    return {"scheme": OmegaConf.to_container(cfg.reinit, resolve=True), "seed": seed}


def load_final_base(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the last stage's base model into the final task's model. A question-answering model's
    encoder has no pooler (its head reads every token), so the stages' pooler stays behind;
    every other tensor must fit exactly (strict load)."""
    keys = set(model.base_model.state_dict())
    dropped = {k for k in state if k.startswith("pooler.") and k not in keys}
    model.base_model.load_state_dict({k: v for k, v in state.items() if k not in dropped})


def run_chain(
    cfg: DictConfig,
    plan: ChainPlan,
    model: nn.Module,
    reinit_cb,
    seeds: dict[str, int],
    logger=None,
) -> list[dict[str, Any]]:
    """Train or reuse every intermediate stage, then load the last one's base model into `model`.

    `model` is the final task's model (its fresh head stays). With `reinit_when=start` the reinit
    is applied before stage 1 and `reinit_cb` is marked applied (so the final stage does not
    reset again; its `reset_counts` still report what was reset); with `final` `reinit_cb` resets
    at the final stage's fit start as in a direct run. Returns one summary per stage for the
    result record. Re-seeds the global RNG at the end, so the final stage trains identically
    whether its stages were trained here or reused.

    Long because each stage is one reuse-or-train step under its cache lock whose weights feed
    the next stage, and its summary is written out in full as the record's schema.
    """
    if plan.empty:
        return []
    from reinitlab.training.models import load_tokenizer

    model_spec = OmegaConf.to_container(cfg.model, resolve=True)
    tokenizer = load_tokenizer(cfg.model)
    cache = StageCache(plan.cache_dir)
    targets = base_targets(model, reinit_cb.targets)
    at_start = plan.reinit_when == "start"
    scheme = reinit_cb.plan
    if at_start and (scheme.layer_order is not None or scheme.masked_heads):
        # Stages apply reset targets only: a permutation or head mask would be lost on the way.
        raise ReinitlabError(
            "reinit=permute and reinit.mode=mask act on the final stage only: use them with "
            f"chain.reinit_when=final (got chain.reinit_when=start, intermediate={list(plan.tasks)})"
        )
    reinit_id = _reinit_identity(cfg, targets, reinit_cb.seed) if at_start else None
    job = str(cfg.paths.output_dir)
    state: dict[str, torch.Tensor] | None = None
    summaries: list[dict[str, Any]] = []
    reset_counts: dict[str, int] = {}
    n = len(plan.stages)
    for stage in plan.stages:
        identity = stage_identity(model_spec, plan, stage.index, seeds, reinit_id)
        key = stage_key(identity)
        with cache.locked(key):
            hit = cache.load(key, identity)
            if hit is not None:
                state, meta = hit
                status = "reused"
            else:
                first_with_reinit = at_start and stage.index == 1 and bool(targets)
                reinit = (targets, reinit_cb.std, reinit_cb.seed) if first_with_reinit else None
                state, meta = fit_stage(stage, cfg.model, plan, tokenizer, state, seeds, reinit)
                meta = cache.save(
                    key,
                    state,
                    {
                        **meta,
                        "key": key,
                        "identity": identity,
                        "trained_by": job,
                        "created": time.time(),
                    },
                )
                status = "trained"
            cache.log_event(key, status, job=job)
        if stage.index == 1:
            reset_counts = meta.get("reset_counts") or {}
        summary = {
            "stage": stage.index,
            "task": stage.task.name,
            "status": status,
            "key": key,
            "cache_dir": str(plan.cache_dir),
            "primary_metric": meta["primary_metric"],
            "train_size": meta["train_size"],
            "final": meta["final"],
            "best": meta["best"],
            "history": meta["history"],
            "epochs": meta["epochs"],
            "steps": meta["steps"],
            "recipe": stage.recipe.identity(),
            "init_fingerprint": meta["init_fingerprint"],
            "final_fingerprint": meta["final_fingerprint"],
            "trained_by": meta.get("trained_by"),
        }
        summaries.append(summary)
        log_stage_metrics(logger, stage.label, meta["history"])
        primary = meta["final"]["metrics"]["val/primary"]
        print(
            f"[reinitlab] stage {stage.index}/{n} {stage.task.name}: {status} "
            f"({meta['primary_metric']}={primary:.4f}) {Path(cache.paths(key)['pt'])}",
            file=sys.stderr,
            flush=True,
        )
    load_final_base(model, state)
    if at_start:
        reinit_cb.applied = True
        reinit_cb.reset_counts = dict(reset_counts)
    L.seed_everything(seeds["train"], workers=True, verbose=False)
    return summaries
