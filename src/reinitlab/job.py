"""The one job builder: a composed config -> everything one fine-tuning run needs.

`train()`, a stack's members (`reinitlab.stack`), the sweeper's up-front checks and
`reinitlab probe` check and set their jobs up here, so they cannot drift apart: the checks that
run before any weights load (including the chain plan and the head option), the reinit plan,
the callbacks in their order (reinit, weight movement, resume, probing), the logger and the
trainer are decided once. The pieces themselves (data module, model, trainer) are
`reinitlab.training.builder`'s, which chain stages share. This module sits above training,
chain, probing and deltas because it composes all of them (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reinitlab.training.builder import (
    build_data,
    build_logger,
    build_model,
    build_trainer,
    job_config,
    scheme_params,
    steps_per_epoch,
    study_name,
    validate_scheme,
)


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
    from reinitlab.reinit import scheme_label
    from reinitlab.training.head_layer import check_head_config
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
    "build_job",
    "check_job",
    "check_qa_job",
    "run_filters",
]
