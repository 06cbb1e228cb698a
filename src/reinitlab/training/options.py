"""The recipe's values and the option keys reinitlab owns, checked before anything loads.

A wrong value should cost seconds, not a model load, a W&B run and an epoch: `trainer.max_epochs
=0`, a negative learning rate or `seed=abc` used to surface as a traceback deep in Lightning or
PyTorch, and a typo such as `+data.batch_sise=8` or `optim.warmup_ratio=2` was accepted
silently. Every message names the option, the value given and what is allowed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from reinitlab.errors import ReinitlabError

MIN_MAX_LENGTH = 8  # [CLS] a [SEP] b [SEP] needs a few positions for any text at all
# Position embeddings reserved before the first token (RoBERTa-style models count from
# padding_idx + 1); the usable length is max_position_embeddings minus this.
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "mpnet": 2}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_int(option: str, value: Any, low: int, allowed: str | None = None) -> int:
    """An integer >= `low`; the error names the option, the value and `allowed`."""
    if not _is_int(value) or value < low:
        raise ReinitlabError(f"{option}={value!r}: allowed: {allowed or f'an integer >= {low}'}")
    return value


def check_number(option: str, value: Any, low: float, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:  # fmt: skip
    """A finite number in [low, high] (an open end where asked)."""
    lo = f"{'(' if low_open else '['}{low:g}"
    hi = f"{high:g}{')' if high_open else ']'}" if high is not None else "inf)"
    bad = not _is_number(value)
    if not bad:
        bad = value < low or (low_open and value == low)
        if high is not None:
            bad = bad or value > high or (high_open and value == high)
    if bad:
        raise ReinitlabError(f"{option}={value!r}: allowed: a number in {lo}, {hi}")
    return float(value)


def check_keys(group: str, given: Mapping[str, Any], known: Any) -> None:
    """Refuse keys reinitlab would ignore (e.g. added with `+group.key=...`); `known` None
    means anything goes (a constructor taking **kwargs)."""
    if known is None:
        return
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ReinitlabError(
            f"{group}.{unknown[0]} is not one of the {group} options (reinitlab would ignore "
            "it); "
            f"known: {', '.join(sorted(known))}"
        )


def init_params(cls: type) -> set[str] | None:
    """A class's constructor parameters; None when it takes **kwargs (anything goes)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"self"}


def trainer_keys(trainer_cfg: Mapping[str, Any]) -> set[str] | None:
    """What the trainer class accepts (`_target_` plus its constructor's parameters)."""
    from hydra.utils import get_class

    params = init_params(get_class(trainer_cfg.get("_target_", "lightning.pytorch.Trainer")))
    # logger, callbacks and plugins are set by reinitlab's job builder
    return None if params is None else {"_target_", *params} - {"logger", "callbacks", "plugins"}


def optim_keys() -> set[str] | None:
    """The `optim` options: the Lightning module's constructor parameters."""
    from reinitlab.training.module import GlueClassifier

    params = init_params(GlueClassifier)
    return None if params is None else params - {"model", "task"}


def max_positions(model_config: Any) -> int | None:
    """The longest input the model's position embeddings allow (None when unbounded)."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit is None:
        return None
    return int(limit) - POSITION_OFFSET.get(getattr(model_config, "model_type", ""), 0)


def check_seed(seed: Any) -> None:
    """`seed`: the one value of a job the sweeper checks per seed (`check_job` on the rest
    once per seed-free job), so no other job check may depend on it."""
    check_int("seed", seed, 0, "an integer >= 0 (sweep with seed=0,1,2)")


def check_recipe(cfg: Mapping[str, Any]) -> None:
    """The seed, trainer, optim and data values and keys of one job (data.max_length against
    the model: `check_max_length`, once its config is read)."""
    from reinitlab.data.datamodule import GlueDataModule

    check_seed(cfg.get("seed"))
    trainer = cfg.get("trainer") or {}
    check_keys("trainer", trainer, trainer_keys(trainer))
    check_int("trainer.max_epochs", trainer.get("max_epochs", 3), 1)
    max_steps = trainer.get("max_steps", -1)
    if not _is_int(max_steps) or not (max_steps == -1 or max_steps >= 1):
        raise ReinitlabError(
            f"trainer.max_steps={max_steps!r}: allowed: -1 (no limit: trainer.max_epochs "
            "decides) or an integer >= 1"
        )
    optim = cfg.get("optim") or {}
    check_keys("optim", optim, optim_keys())
    check_number("optim.lr", optim.get("lr", 2e-5), 0, low_open=True)
    check_number("optim.weight_decay", optim.get("weight_decay", 0.0), 0)
    check_number("optim.warmup_ratio", optim.get("warmup_ratio", 0.0), 0, 1, high_open=True)
    check_number("optim.adam_eps", optim.get("adam_eps", 1e-8), 0, low_open=True)
    data = cfg.get("data") or {}
    check_keys("data", data, GlueDataModule.CONFIG_KEYS)
    check_int("data.batch_size", data.get("batch_size", 32), 1)
    check_int("data.eval_batch_size", data.get("eval_batch_size", 128), 1)
    check_int("data.num_workers", data.get("num_workers", 0), 0)
    if data.get("max_train_samples") is not None:
        check_int("data.max_train_samples", data["max_train_samples"], 1,
                  "null (the whole training set) or an integer >= 1")  # fmt: skip


def check_max_length(max_length: Any, model_config: Any = None) -> None:
    """data.max_length: enough for a sentence, within the model's position embeddings."""
    top = max_positions(model_config) if model_config is not None else None
    if not _is_int(max_length) or max_length < MIN_MAX_LENGTH or (top and max_length > top):
        upper = f"..{top} (the model's position embeddings)" if top else " or more"
        raise ReinitlabError(f"data.max_length={max_length!r}: allowed: {MIN_MAX_LENGTH}{upper}")


def check_steps_reach_validation(max_steps: int, steps_per_epoch: int) -> None:
    """A step limit inside the first epoch would end training before any validation, so the
    job could not produce a result: refuse it before the model loads."""
    if max_steps != -1 and max_steps < steps_per_epoch:
        raise ReinitlabError(
            f"trainer.max_steps={max_steps} ends training inside the first epoch (one epoch is "
            f"{steps_per_epoch} steps here), before the dev set is ever evaluated: allowed: -1 "
            f"or >= {steps_per_epoch}; to train on fewer examples, lower data.max_train_samples"
        )


__all__ = [
    "check_int",
    "check_keys",
    "check_max_length",
    "check_number",
    "check_recipe",
    "check_steps_reach_validation",
    "init_params",
    "max_positions",
    "optim_keys",
    "trainer_keys",
]
