"""The pieces a fine-tuning run is built from: data module, model, trainer, logger.

The one job builder (`reinitlab.job`) assembles a job from them; every intermediate stage of a
chain (`reinitlab.chain.stages`) and `reinitlab probe` build their runs from the same pieces,
so they cannot drift apart: the data module (subset draw, shuffle seed, length grouping), the
model with its fresh head (seeded) and head surgery, and the trainer are decided once. They
live here, below chain and probing, because those packages build runs of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf


def scheme_params(scheme: DictConfig | dict) -> dict[str, Any]:
    """A `reinit` config's parameters, resolved, without its `name`."""
    params = (
        OmegaConf.to_container(scheme, resolve=True)
        if isinstance(scheme, DictConfig)
        else dict(scheme)
    )
    params.pop("name", None)
    return params


def validate_scheme(
    scheme: DictConfig, num_layers: int, model_name: str, model_config: Any = None
) -> None:
    """Check scheme parameters against the model (family, layer and head counts) before
    anything heavy runs; `model_config` (when given) also checks the family and head count."""
    from reinitlab.reinit import layout_for, resolve_scheme

    num_heads = None
    if model_config is not None:
        layout_for(getattr(model_config, "model_type", None), f"model {model_name!r}")
        num_heads = model_config.num_attention_heads
    resolve_scheme(scheme_params(scheme) | {"name": scheme.name}, num_layers, num_heads, model_name)


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's resolved config without Hydra's own node (present when tests compose it)."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in cfg
        if key != "hydra"
    }


def build_data(task, tokenizer, data_cfg, seeds: dict[str, int], **overrides):
    """The data module of a run (tokenized splits, from the cache when there), set up."""
    from reinitlab.data.datamodule import GlueDataModule
    from reinitlab.data.squad_datamodule import SquadDataModule

    if not OmegaConf.is_config(data_cfg):
        data_cfg = OmegaConf.create(dict(data_cfg))
    kind = SquadDataModule if task.is_qa else GlueDataModule
    data = kind.from_config(task, tokenizer, data_cfg, seeds, **overrides)
    data.setup("fit")
    return data


def steps_per_epoch(cfg: DictConfig, data) -> int:
    """Optimizer steps in one training epoch, as Lightning will count them
    (`limit_train_batches`, gradient accumulation)."""
    import math

    batches = math.ceil(len(data.train_set) / data.batch_size)  # no drop_last
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit)
    return max(1, math.ceil(batches / int(cfg.trainer.get("accumulate_grad_batches") or 1)))


def build_model(model_spec, task, seeds: dict[str, int], head: Any = None):
    """The pretrained encoder with a fresh head drawn from the training seed (which also seeds
    everything the run draws next), and the frozen-head-on-layer surgery when asked for."""
    import lightning as L

    from reinitlab.training.head_layer import attach_head_to_layer
    from reinitlab.training.models import load_model

    L.seed_everything(seeds["train"], workers=True, verbose=False)
    model = load_model(model_spec, task, head_seed=seeds["train"])
    head = head or {}
    attach_head_to_layer(model, head.get("layer"), freeze=head.get("freeze", True))
    return model


def build_trainer(
    trainer_cfg, callbacks: list, early_stopping: Any = None, logger: Any = None, plugins=()
):
    """A Lightning trainer from the `trainer` config; early stopping on `val/primary`."""
    from lightning.pytorch.callbacks import EarlyStopping

    from reinitlab.training.console import epoch_progress_bar, progress_bar_visible

    callbacks = list(callbacks)
    draw_bar = bool(trainer_cfg.get("enable_progress_bar", True)) and progress_bar_visible()
    if draw_bar:
        callbacks.append(epoch_progress_bar())
    if early_stopping:
        callbacks.append(EarlyStopping(monitor="val/primary", mode="max", **early_stopping))
    return hydra.utils.instantiate(
        trainer_cfg,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        plugins=list(plugins),
        enable_progress_bar=draw_bar,
    )


def sweep_group() -> str | None:
    """The sweep's directory name (W&B group), or None outside Hydra or for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return Path(hc.sweep.dir).name
    return None


def study_name(cfg: DictConfig) -> str | None:
    """The study a job belongs to: `study=` when set, else the sweep dir's name (None for a
    single run). It is the W&B group, and the report and dashboard show it."""
    study = cfg.get("study")
    return str(study) if study else sweep_group()


def build_logger(cfg: DictConfig, run_name: str, job_type: str, wandb_extra: dict | None = None):
    """The job's logger (W&B named and grouped by study; CSV; or None for `logger=none`)."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    kwargs: dict[str, Any] = {}
    if cfg.logger._target_.endswith("WandbLogger"):
        kwargs = {"name": run_name, "job_type": job_type, "group": study_name(cfg)}
        kwargs.update(wandb_extra or {})
        Path(cfg.logger.save_dir).mkdir(parents=True, exist_ok=True)
    logger = hydra.utils.instantiate(cfg.logger, **kwargs)
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        # Lightning passes anonymous=None, which recent wandb versions answer with a
        # deprecation warning on every run although the setting is unset: leave it out.
        init.pop("anonymous", None)
    return logger


__all__ = [
    "build_data",
    "build_logger",
    "build_model",
    "build_trainer",
    "job_config",
    "scheme_params",
    "steps_per_epoch",
    "study_name",
    "sweep_group",
    "validate_scheme",
]
