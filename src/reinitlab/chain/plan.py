"""What an intermediate-task chain is: its stages, each stage's recipe, and when reinit happens.

`plan_chain(cfg)` reads `intermediate`, `chain.*` and the job's recipe and validates all of it
(unknown tasks, bad `chain.reinit_when`, bad per-stage overrides) before anything loads or
trains. It is pure configuration work: no data, no weights.

Per-stage recipe: every stage fine-tunes with the final task's recipe (`optim`, `data.batch_size`,
`data.max_train_samples`, `trainer`, `early_stopping`) unless `chain.stage_overrides.<task>`
says otherwise, e.g. `+chain.stage_overrides.wnli.optim.lr=1e-5`,
`+chain.stage_overrides.mnli.data.max_train_samples=20000`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reinitlab.data.tasks import TaskSpec, available_tasks, load_task
from reinitlab.errors import ReinitlabError

REINIT_WHEN = ("start", "final")
OVERRIDE_KEYS = ("optim", "trainer", "data", "early_stopping")
OVERRIDE_DATA_KEYS = ("batch_size", "max_train_samples")
# Trainer options that do not change the trained weights: left out of a stage's identity so
# that jobs differing only in them (their output dir above all) share the stage.
NON_IDENTITY_TRAINER_KEYS = (
    "default_root_dir",
    "enable_progress_bar",
    "enable_model_summary",
    "enable_checkpointing",
    "log_every_n_steps",
    "num_sanity_val_steps",
    "logger",
    "callbacks",
)


class ChainWarning(UserWarning):
    """A chain that is allowed but probably not what the user meant."""


def _container(node: Any) -> Any:
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return copy.deepcopy(node)


def _deep_merge(base: dict, extra: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class StageRecipe:
    """How one stage fine-tunes: the final task's recipe with the stage's overrides applied."""

    optim: dict[str, Any]
    trainer: dict[str, Any]
    early_stopping: dict[str, Any] | None
    batch_size: int
    max_train_samples: int | None

    def identity(self) -> dict[str, Any]:
        """The recipe as it enters the stage's cache identity: trainer keys that do not change the
        weights (progress bar, logging, checkpointing, ...) are left out."""
        trainer = {k: v for k, v in self.trainer.items() if k not in NON_IDENTITY_TRAINER_KEYS}
        return {
            "optim": self.optim,
            "trainer": trainer,
            "early_stopping": self.early_stopping,
            "batch_size": self.batch_size,
            "max_train_samples": self.max_train_samples,
        }


@dataclass(frozen=True)
class StagePlan:
    """One intermediate stage: its 1-based position in the chain, task and recipe."""

    index: int  # 1-based
    task: TaskSpec
    recipe: StageRecipe

    @property
    def label(self) -> str:
        """`stage1_wnli`: the prefix of this stage's metrics in the logger."""
        return f"stage{self.index}_{self.task.name}"


@dataclass(frozen=True)
class ChainPlan:
    """A job's validated chain of intermediate tasks, in training order, and where their fine-tuned
    weights are cached; no stages = direct fine-tuning."""

    tasks: tuple[str, ...]
    stages: tuple[StagePlan, ...]
    reinit_when: str
    cache_dir: Path
    data: dict[str, Any] = field(default_factory=dict)  # glue_dir, cache_dir, max_length, ...

    @property
    def empty(self) -> bool:
        """No intermediate stage: the job fine-tunes directly."""
        return not self.stages


def _check_tasks(chain: Any) -> tuple[str, ...]:
    if chain is None:
        return ()
    if isinstance(chain, str) and chain:
        chain = [chain]  # intermediate=wnli: a one-task chain
    if isinstance(chain, str) or not isinstance(chain, (list, tuple)):
        raise ReinitlabError(
            f"intermediate={chain!r} must be a list of GLUE task names, e.g. intermediate=[wnli] "
            "or intermediate=[mnli,mrpc] ([] = direct fine-tuning)"
        )
    known = available_tasks()
    for pos, name in enumerate(chain, start=1):
        if not isinstance(name, str) or name not in known:
            raise ReinitlabError(
                f"intermediate={list(chain)}: stage {pos} names an unknown task {name!r}; "
                f"known tasks: {known}"
            )
        if load_task(name).is_qa:
            raise ReinitlabError(
                f"intermediate={list(chain)}: stage {pos} is {name!r}, a question-answering "
                "task; intermediate stages are GLUE tasks (QA stages are not supported yet)"
            )
    return tuple(chain)


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    known = available_tasks()
    for task, ov in overrides.items():
        if task not in known:
            raise ReinitlabError(
                f"chain.stage_overrides.{task}: {task!r} is not a GLUE task; known: {known}"
            )
        if not isinstance(ov, Mapping):
            raise ReinitlabError(
                f"chain.stage_overrides.{task} must be a mapping of {list(OVERRIDE_KEYS)}, got {ov!r}"
            )
        for key, value in ov.items():
            if key not in OVERRIDE_KEYS:
                raise ReinitlabError(
                    f"chain.stage_overrides.{task}.{key}: unknown option; allowed: "
                    f"{list(OVERRIDE_KEYS)}"
                )
            if key == "data":
                bad = sorted(set(value or {}) - set(OVERRIDE_DATA_KEYS))
                if bad:
                    raise ReinitlabError(
                        f"chain.stage_overrides.{task}.data.{bad[0]}: not a per-stage option; "
                        f"allowed: {list(OVERRIDE_DATA_KEYS)}"
                    )


def stage_recipe(cfg: DictConfig, override: Mapping[str, Any] | None) -> StageRecipe:
    """The final task's optim, trainer, early stopping and data sizes with one stage's
    `chain.stage_overrides` entry merged over them (dicts deeply, others replaced)."""
    ov = dict(override or {})
    data_ov = dict(ov.get("data") or {})
    return StageRecipe(
        optim=_deep_merge(_container(cfg.optim), ov.get("optim") or {}),
        trainer=_deep_merge(_container(cfg.trainer), ov.get("trainer") or {}),
        early_stopping=_container(ov["early_stopping"])
        if "early_stopping" in ov
        else _container(cfg.get("early_stopping")),
        batch_size=int(data_ov.get("batch_size", cfg.data.batch_size)),
        max_train_samples=data_ov.get("max_train_samples", cfg.data.max_train_samples),
    )


def plan_chain(cfg: DictConfig) -> ChainPlan:
    """The job's chain, validated; `ChainPlan.empty` for direct fine-tuning (`intermediate=[]`)."""
    tasks = _check_tasks(_container(cfg.get("intermediate")))
    chain_cfg = _container(cfg.get("chain")) or {}
    when = chain_cfg.get("reinit_when", "start")
    if when not in REINIT_WHEN:
        raise ReinitlabError(
            f"chain.reinit_when={when!r} is not allowed; use one of {list(REINIT_WHEN)} "
            "(start: reinit the pretrained model, then run the chain; final: reinit just before "
            "the final task)"
        )
    overrides = chain_cfg.get("stage_overrides") or {}
    _check_overrides(overrides)
    final = cfg.task.name
    if final in tasks:
        warnings.warn(
            f"intermediate={list(tasks)} repeats the final task {final!r}: the model is "
            f"fine-tuned on {final} more than once (allowed; is it what you meant?)",
            ChainWarning,
            stacklevel=2,
        )
    if tasks and (cfg.get("head") or {}).get("layer") is not None:
        raise ReinitlabError(
            "head.layer cannot be combined with intermediate tasks: a chain carries the whole "
            "encoder from stage to stage; use intermediate=[] with head.layer"
        )
    stages = tuple(
        StagePlan(i, load_task(name), stage_recipe(cfg, overrides.get(name)))
        for i, name in enumerate(tasks, start=1)
    )
    cache_dir = chain_cfg.get("cache_dir") or str(Path(cfg.data.cache_dir) / "stages")
    data = {
        "glue_dir": cfg.data.glue_dir,
        "cache_dir": cfg.data.cache_dir,
        "max_length": int(cfg.data.max_length),
        "eval_batch_size": int(cfg.data.eval_batch_size),
        "pad_to_max_length": bool(cfg.data.pad_to_max_length),
        "num_workers": int(cfg.data.num_workers),
        "group_by_length": bool(cfg.data.get("group_by_length", False)),
    }
    return ChainPlan(tasks, stages, when, Path(str(cache_dir)).expanduser(), data)
