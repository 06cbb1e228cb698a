"""The one job builder: a composed config -> everything one fine-tuning run needs.

`train()`, every intermediate stage of a chain and `reinitlab probe` set their runs up here, so
they cannot drift apart: the checks that run before any weights load, the data module (subset
draw, shuffle seed, length grouping), the model with its fresh head (seeded) and head surgery,
the reinit plan, the callbacks in their order, the logger and the trainer are decided once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class JobSpec:
    """What a job is, checked against the model's config before any weights load."""

    task: Any  # TaskSpec
    seeds: dict[str, int]
    model_config: Any  # transformers PretrainedConfig
    num_layers: int
    params: dict[str, Any]  # the reinit scheme's parameters
    label: str  # `k=5`, `L12H6`, `baseline`, ...
    chain: Any  # ChainPlan; empty for direct fine-tuning


def check_job(cfg: DictConfig) -> JobSpec:
    """Fail fast: the recipe's values and keys, task, seeds, data files, model source, scheme
    vs model, head and chain options -- before anything loads. The sweeper runs it before
    launching any job, once per job that differs only in `seed`: `seed` must enter here only
    through `check_seed` (in check_recipe) and `resolve_seeds` (which cannot fail for a seed
    check_seed accepts)."""
    from reinitlab.chain import plan_chain
    from reinitlab.data.glue_io import check_source
    from reinitlab.data.tasks import TaskSpec
    from reinitlab.probing.head_layer import check_head_config
    from reinitlab.reinit import scheme_label
    from reinitlab.training.models import load_config
    from reinitlab.training.module import validate_trainer_config
    from reinitlab.training.options import check_max_length, check_recipe
    from reinitlab.training.seeding import resolve_seeds

    validate_trainer_config(cfg)
    check_recipe(cfg)
    task = TaskSpec.from_config(cfg.task)
    seeds = resolve_seeds(cfg.seed, cfg.get("seeds"))
    if task.is_qa:
        check_qa_job(cfg, task)
    else:
        check_source(task, cfg.data.get("glue_dir"))
    model_config = load_config(cfg.model, task)
    check_max_length(cfg.data.get("max_length"), model_config)
    num_layers = model_config.num_hidden_layers
    validate_scheme(cfg.reinit, num_layers, cfg.model.name, model_config)
    check_head_config(cfg.get("head"), num_layers, cfg.model.name, cfg.reinit.get("k"))
    chain = plan_chain(cfg)
    params = scheme_params(cfg.reinit)
    label = scheme_label(cfg.reinit.name, params, num_layers)
    return JobSpec(task, seeds, model_config, num_layers, params, label, chain)


def check_qa_job(cfg: DictConfig, task) -> None:
    """A SQuAD job: its files (or the hub), and the options that do not apply to QA yet."""
    from reinitlab.data.squad_io import check_squad_source
    from reinitlab.errors import ReinitlabError

    check_squad_source(task.qa.version, cfg.data.get("squad_dir"))
    if task.qa.doc_stride >= cfg.data.max_length:
        raise ReinitlabError(
            f"task.qa.doc_stride={task.qa.doc_stride} must be smaller than "
            f"data.max_length={cfg.data.max_length} (consecutive windows share doc_stride tokens)"
        )
    head = cfg.get("head") or {}
    if head.get("layer") is not None:
        raise ReinitlabError(
            f"head.layer={head.get('layer')} is for sequence classifiers; task={task.name} is "
            "question answering: leave head.layer null"
        )
    probe = cfg.get("probe") or {}
    if probe.get("before") or probe.get("after"):
        raise ReinitlabError(
            f"probe.before/probe.after train linear probes on class labels; task={task.name} "
            "has none: leave them false"
        )
    if cfg.data.get("group_by_length"):
        raise ReinitlabError(f"data.group_by_length=true is not supported for task={task.name}")


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

    from reinitlab.probing.head_layer import attach_head_to_layer
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

    from reinitlab.training.console import epoch_progress_bar

    callbacks = list(callbacks)
    if trainer_cfg.get("enable_progress_bar", True):
        callbacks.append(epoch_progress_bar())
    if early_stopping:
        callbacks.append(EarlyStopping(monitor="val/primary", mode="max", **early_stopping))
    return hydra.utils.instantiate(
        trainer_cfg,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        plugins=list(plugins),
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


def run_filters(spec: JobSpec, cfg: DictConfig) -> dict[str, Any]:
    """Flat run-config keys that W&B can filter and group by (the full config is nested):
    study, task_name, model_name, scheme, label, is_baseline, k (L+1 for a baseline, so it
    sits on the layer curve), layer/head (a single-head run), seed."""
    params = spec.params
    baseline = spec.label == "baseline"
    k = spec.num_layers + 1 if baseline else None
    if cfg.reinit.name == "progressive" and not baseline:
        k = params.get("k")
    layer = head = None
    if cfg.reinit.name == "heads":
        pairs = params.get("heads")
        if pairs is None and params.get("layer") is not None and params.get("head") is not None:
            pairs = [(params["layer"], params["head"])]
        if pairs and len(pairs) == 1 and all(isinstance(v, int) for v in pairs[0]):
            layer, head = pairs[0]
    return {
        "study": study_name(cfg),
        "task_name": spec.task.name,
        "model_name": cfg.model.name,
        "scheme": cfg.reinit.name,
        "label": spec.label,
        "is_baseline": baseline,
        "k": k,
        "layer": layer,
        "head": head,
        "seed": int(cfg.seed),
    }


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


@dataclass
class Job:
    """One fine-tuning run, built: fit `module` on `data` with `trainer`, then record it."""

    cfg: DictConfig
    spec: JobSpec
    data: Any
    model: Any
    plan: Any  # SchemePlan
    reinit_cb: Any
    module: Any
    resume: Any  # ResumePlan
    logger: Any
    trainer: Any
    delta_cb: Any = None
    probe_cb: Any = None
    callbacks: list = field(default_factory=list)

    def log_hyperparams(self) -> None:
        """Log the resolved config, seeds, scheme label, layer count and the flat filter keys
        (`run_filters`) to the logger, if any; for W&B also which summary of `val/primary`
        matters: its best (max) and its final (last) value."""
        if self.logger is None:
            return
        self.logger.log_hyperparams(
            {
                **job_config(self.cfg),
                "seeds": self.spec.seeds,
                "scheme_label": self.spec.label,
                "num_layers": self.spec.num_layers,
                **run_filters(self.spec, self.cfg),
            }
        )
        if "Wandb" in type(self.logger).__name__:
            self.logger.experiment.define_metric("val/primary", summary="max,last")

    def close_logger(self) -> None:
        """End the W&B run (its files complete) whether the fit succeeded or not."""
        logger = self.logger
        if (
            logger is not None
            and hasattr(logger, "experiment")
            and "Wandb" in type(logger).__name__
        ):
            logger.experiment.finish()  # this job's run (a stack holds one per member)


def build_job(
    cfg: DictConfig, extra_callbacks: list | tuple = (), stacked: bool = False, data: Any = None
) -> Job:
    """Everything `train()` needs, in the order that matters: checks first, data, model, plan;
    then the resume plan, logger and callbacks (delta tracking after the reinit, so its
    fit-start snapshot is post-reinit; probing after the reinit too).

    `stacked`: a member of a stack (`reinitlab.stack`), which one trainer fits with its
    siblings: no trainer of its own, and a W&B run of its own beside theirs in one process.
    `data`: the data module a sibling already built (a stack's jobs share their data config)."""
    from reinitlab.deltas.callback import DeltaTracker
    from reinitlab.probing.run import ProbeCallback
    from reinitlab.reinit import plan_scheme
    from reinitlab.training.models import load_tokenizer
    from reinitlab.training.module import GlueClassifier
    from reinitlab.training.options import check_steps_reach_validation
    from reinitlab.training.reinit_callback import ReinitCallback
    from reinitlab.training.resume import plan_resume

    spec = check_job(cfg)
    if data is None:
        data = build_data(spec.task, load_tokenizer(cfg.model), cfg.data, spec.seeds)
    check_steps_reach_validation(cfg.trainer.get("max_steps", -1), steps_per_epoch(cfg, data))
    model = build_model(cfg.model, spec.task, spec.seeds, cfg.get("head"))
    plan = plan_scheme(model, {"name": cfg.reinit.name, **spec.params})
    reinit_cb = ReinitCallback(plan, std=model.config.initializer_range, seed=spec.seeds["reinit"])
    if spec.task.is_qa:
        from reinitlab.training.qa_module import QuestionAnswering

        dev = (data.val_examples, data.val_features)
        module = QuestionAnswering(model, spec.task, dev=dev, **cfg.optim)
    else:
        module = GlueClassifier(model, spec.task, **cfg.optim)
    run_name = f"{spec.task.name}-{cfg.model.name}-{spec.label}-seed{cfg.seed}".replace("=", "")
    resume = plan_resume(cfg, Path(cfg.paths.output_dir))  # checkpoint, W&B id, signal hook
    wandb_extra = resume.logger_kwargs() | ({"reinit": "create_new"} if stacked else {})
    logger = build_logger(cfg, run_name, cfg.reinit.name, wandb_extra=wandb_extra)
    delta_cb = DeltaTracker.from_config(cfg, model, data)  # pretrained snapshot: now, pre-reinit
    probe_cb = ProbeCallback.from_config(cfg, data, seed=spec.seeds["subset"])
    callbacks = [reinit_cb, delta_cb, resume.callback, *extra_callbacks, probe_cb]
    callbacks = [c for c in callbacks if c is not None]
    trainer = None
    if not stacked:
        trainer = build_trainer(
            cfg.trainer, callbacks, cfg.get("early_stopping"), logger, resume.plugins()
        )
    return Job(cfg, spec, data, model, plan, reinit_cb, module, resume, logger, trainer,
               delta_cb, probe_cb, callbacks)  # fmt: skip


__all__ = [
    "Job",
    "JobSpec",
    "build_data",
    "build_job",
    "build_logger",
    "build_model",
    "build_trainer",
    "check_job",
    "check_qa_job",
    "job_config",
    "run_filters",
    "scheme_params",
    "steps_per_epoch",
    "study_name",
    "validate_scheme",
]
