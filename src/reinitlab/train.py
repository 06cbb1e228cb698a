"""The Hydra entry point: one fine-tuning job (a reinit scheme + a GLUE task), or a sweep with -m.

`train(cfg)` does the work and returns the result record, so tests and notebooks can call it
with a composed config; `main()` is the console script `reinitlab-train` (and `train.py`).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from reinitlab.errors import ReinitlabError
from reinitlab.paths import config_dir

log = logging.getLogger("reinitlab")


def scheme_params(scheme: DictConfig | dict) -> dict[str, Any]:
    params = (
        OmegaConf.to_container(scheme, resolve=True)
        if isinstance(scheme, DictConfig)
        else dict(scheme)
    )
    params.pop("name", None)
    return params


def scheme_label(name: str, params: dict[str, Any], num_layers: int) -> str:
    """`k=5`, `layers 1,4,7`, `block 4-6`, `L12H6`, `perm seed 3`, ... or `baseline`."""
    from reinitlab.reinit import scheme_label as label_of

    return label_of(name, params, num_layers)


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


def _sweep_group() -> str | None:
    """The sweep's directory name (W&B group), or None outside Hydra or for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return Path(hc.sweep.dir).name
    return None


def build_logger(cfg: DictConfig, run_name: str, job_type: str, wandb_extra: dict | None = None):
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    kwargs: dict[str, Any] = {}
    if cfg.logger._target_.endswith("WandbLogger"):
        kwargs = {"name": run_name, "job_type": job_type, "group": _sweep_group()}
        kwargs.update(wandb_extra or {})
        Path(cfg.logger.save_dir).mkdir(parents=True, exist_ok=True)
    return hydra.utils.instantiate(cfg.logger, **kwargs)


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's resolved config without Hydra's own node (present when tests compose it)."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in cfg
        if key != "hydra"
    }


def train(cfg: DictConfig, extra_callbacks: list | tuple = ()) -> dict[str, Any]:
    """Run one job; write `<output_dir>/result.json` and return the record.

    `extra_callbacks` (Lightning callbacks) are added to the job's own, e.g. by benchmarks."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    from reinitlab.callbacks import ReinitCallback
    from reinitlab.chain import plan_chain, run_chain
    from reinitlab.datamodule import GlueDataModule
    from reinitlab.delta_callback import DeltaTracker
    from reinitlab.jobkey import job_key
    from reinitlab.models import load_config, load_model, load_tokenizer
    from reinitlab.module import GlueClassifier
    from reinitlab.probing.head_layer import attach_head_to_layer, check_head_config
    from reinitlab.probing.run import ProbeCallback
    from reinitlab.reinit import plan_scheme
    from reinitlab.results import best_and_final, package_versions, write_result
    from reinitlab.resume import plan_resume
    from reinitlab.seeding import resolve_seeds
    from reinitlab.tasks import TaskSpec

    started = time.time()
    output_dir = Path(cfg.paths.output_dir)
    task = TaskSpec.from_config(cfg.task)
    seeds = resolve_seeds(cfg.seed, cfg.get("seeds"))
    model_name = cfg.model.name

    # Fail fast: scheme vs model, then data, before the weights load or training starts.
    model_config = load_config(cfg.model, task)
    num_layers = model_config.num_hidden_layers
    validate_scheme(cfg.reinit, num_layers, model_name, model_config)
    check_head_config(cfg.get("head"), num_layers, model_name, cfg.reinit.get("k"))
    chain = plan_chain(cfg)  # intermediate tasks (issue 7): validated before anything loads
    tokenizer = load_tokenizer(cfg.model)
    data = GlueDataModule.from_config(task, tokenizer, cfg.data, seeds)
    data.setup("fit")

    L.seed_everything(seeds["train"], workers=True, verbose=False)
    model = load_model(cfg.model, task, head_seed=seeds["train"])
    head = cfg.get("head") or {}
    attach_head_to_layer(model, head.get("layer"), freeze=head.get("freeze", True))
    params = scheme_params(cfg.reinit)
    plan = plan_scheme(model, {"name": cfg.reinit.name, **params})
    reinit_cb = ReinitCallback(plan, std=model.config.initializer_range, seed=seeds["reinit"])
    module = GlueClassifier(model, task, **cfg.optim)

    label = scheme_label(cfg.reinit.name, params, num_layers)
    run_name = f"{task.name}-{model_name}-{label}-seed{cfg.seed}".replace("=", "")
    resume = plan_resume(cfg, output_dir)  # checkpoint to resume from, W&B id, signal hook
    logger = build_logger(cfg, run_name, cfg.reinit.name, wandb_extra=resume.logger_kwargs())
    delta_cb = DeltaTracker.from_config(cfg, model, data)  # pretrained snapshot: now, pre-reinit
    callbacks: list[L.Callback] = [reinit_cb, resume.callback, *extra_callbacks]
    if delta_cb is not None:
        callbacks.insert(1, delta_cb)  # after reinit_cb: its fit-start snapshot is post-reinit
    probe_cb = ProbeCallback.from_config(cfg, data, seed=seeds["subset"])  # after reinit_cb
    if probe_cb is not None:
        callbacks.append(probe_cb)
    if cfg.get("early_stopping"):
        callbacks.append(EarlyStopping(monitor="val/primary", mode="max", **cfg.early_stopping))
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        plugins=resume.plugins(),
    )
    resolved = job_config(cfg)
    try:
        if logger is not None:
            logger.log_hyperparams(
                {**resolved, "seeds": seeds, "scheme_label": label, "num_layers": num_layers}
            )
        stages = run_chain(cfg, chain, model, reinit_cb, seeds, logger)  # [] if no chain
        trainer.fit(module, datamodule=data, **resume.fit_kwargs())
    finally:
        if (
            logger is not None
            and hasattr(logger, "experiment")
            and "Wandb" in type(logger).__name__
        ):
            import wandb

            wandb.finish()

    best, final = best_and_final(module.history)
    if final is None:
        raise RuntimeError("training ended without a validation run; no metrics to record")
    record = {
        "status": "completed",
        "job_key": job_key(cfg),
        "task": task.name,
        "model": model_name,
        "num_layers": num_layers,
        "scheme": {"name": cfg.reinit.name, "label": label, **params},
        "intermediate": list(chain.tasks),
        "stages": stages,
        "reset_tensors": sorted(reinit_cb.reset_counts),
        "reset_values": int(sum(reinit_cb.reset_counts.values())),
        "reinit_plan": plan.summary(),  # permuted layer order, masked heads (1-based)
        "seed": int(cfg.seed),
        "seeds": seeds,
        "primary_metric": task.primary_metric,
        "train_size": data.num_train_examples,
        "max_train_samples": cfg.data.max_train_samples,
        "dev_sizes": {v.name: len(d) for v, d in zip(task.validation, data.val_sets, strict=False)},
        "final": final,
        "best": best,
        "history": module.history,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "stopped_early": bool(cfg.get("early_stopping"))
        and trainer.current_epoch < cfg.trainer.max_epochs,
        "wall_time_s": round(time.time() - started, 2),
        "device": str(next(model.parameters()).device),
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
        "config": resolved,
        **resume.record_fields(),
    }
    if probe_cb is not None:
        record["probe"] = probe_cb.results
    if delta_cb is not None:
        record["deltas"] = delta_cb.result
    path = write_result(output_dir, record)
    resume.finish()
    final_primary = final["metrics"]["val/primary"]
    best_primary = best["metrics"]["val/primary"]
    print(
        f"[reinitlab] {task.name} | {model_name} | {cfg.reinit.name} {label} | seed {cfg.seed} | "
        f"{task.primary_metric}={final_primary:.4f} (best {best_primary:.4f} @ epoch "
        f"{best['epoch'] + 1}) | {record['wall_time_s']:.0f}s | {path}",
        flush=True,
    )
    return record


def _route_lightning_logs_to_hydra() -> None:
    """Lightning adds its own console handler; under Hydra (which logs to console and the job's
    log file) that prints every line twice. Drop it and let records propagate to Hydra's."""
    import lightning  # noqa: F401  (installs the handlers we remove)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            lg.removeHandler(handler)
        lg.propagate = True


def _quiet_known_warnings() -> None:
    """Warnings that are expected here and say nothing to the user: data is tokenized in memory
    (no loader workers needed), Spearman keeps the dev predictions (a dev set is small), and a
    deprecation inside Lightning itself."""
    for pattern in (
        ".*does not have many workers.*",
        ".*will save all targets and predictions in the buffer.*",
        ".*isinstance\\(treespec, LeafSpec\\).*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from reinitlab.jobstate import run_tracked

    _route_lightning_logs_to_hydra()
    _quiet_known_warnings()
    try:
        record = run_tracked(cfg, train)
    except ReinitlabError as e:
        log.error("%s", e)
        if HydraConfig.get().mode == RunMode.RUN:
            print(f"reinitlab: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        raise  # multirun: this job fails, the others still run, the sweep exits non-zero
    return None if record is None else record["best"]["metrics"]["val/primary"]


def main() -> None:
    try:
        _hydra_main()
    except KeyboardInterrupt:
        print("reinitlab: interrupted (the job is recorded as interrupted)", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
