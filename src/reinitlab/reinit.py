"""Which pretrained tensors a reinit scheme resets, and how: pure PyTorch, no Lightning.

A scheme is turned into a list of `ResetTarget`s (parameter name + how to re-initialize it,
optionally a slice of it) by `plan_reinit`; `apply_reset` then writes fresh values with
`torch.nn.init` directly. We never call the model's `_init_weights`: in transformers 5 it
skips weights that `from_pretrained` loaded, so it would silently reset nothing.

Layers are numbered 1..L as in the papers; `progressive` with `k` resets layers k..L, and
k = L+1 resets nothing (the baseline).

Notebook use::

    targets = plan_reinit(model, {"name": "progressive", "k": 10})
    apply_reset(model, targets, std=model.config.initializer_range, seed=0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reinitlab.errors import ReinitlabError

TRUNC_SIGMAS = 2.0  # BERT's TF initializer: truncated_normal(stddev=0.02), cut at ±2σ


@dataclass(frozen=True)
class ResetTarget:
    """One parameter (or a slice of it) to overwrite.

    init: "normal" (truncated normal, std = initializer_range, cut at ±2σ), "zeros", "ones".
    index: a tuple of slices into the parameter, or None for the whole tensor.
    """

    name: str
    init: str
    index: tuple[slice, ...] | None = None


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers (BERT-style: `<base>.encoder.layer`)."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ReinitlabError(
            f"{type(model).__name__}: cannot find BERT-style encoder layers (<base>.encoder.layer)"
        )
    return layers


def _prefix_of(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return f"{name}." if name else ""
    raise ValueError("module is not part of the model")


def module_targets(model: nn.Module, module: nn.Module) -> list[ResetTarget]:
    """Targets that re-initialize every Linear, LayerNorm and Embedding inside `module`."""
    prefix = _prefix_of(model, module)
    targets: list[ResetTarget] = []
    for sub_name, sub in module.named_modules():
        p = f"{prefix}{sub_name}." if sub_name else prefix
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            targets.append(ResetTarget(f"{p}weight", "normal"))
            if getattr(sub, "bias", None) is not None:
                targets.append(ResetTarget(f"{p}bias", "zeros"))
        elif isinstance(sub, nn.LayerNorm):
            if sub.weight is not None:
                targets.append(ResetTarget(f"{p}weight", "ones"))
            if sub.bias is not None:
                targets.append(ResetTarget(f"{p}bias", "zeros"))
    return targets


def check_progressive_k(k: int | None, num_layers: int, model_name: str = "the model") -> int:
    """Resolve and validate k (None = L+1 = baseline); the error names the layer count."""
    if k is None:
        return num_layers + 1
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_layers + 1:
        raise ReinitlabError(
            f"reinit.k={k!r} is out of range for {model_name}, which has {num_layers} encoder "
            f"layers: k must be an integer in 1..{num_layers + 1} (k=1 re-initializes every "
            f"layer, k={num_layers + 1} none: the baseline)"
        )
    return k


def progressive_targets(model: nn.Module, k: int | None, pooler: bool = False) -> list[ResetTarget]:
    """Layers k..L (1-based) and optionally the pooler. Embeddings are never touched."""
    layers = encoder_layers(model)
    k = check_progressive_k(k, len(layers), getattr(model.config, "name_or_path", "the model"))
    targets = [t for layer in list(layers)[k - 1 :] for t in module_targets(model, layer)]
    if pooler:
        targets += pooler_targets(model)
    return targets


def pooler_targets(model: nn.Module) -> list[ResetTarget]:
    pool = getattr(getattr(model, "base_model", model), "pooler", None)
    if pool is None:
        raise ReinitlabError(f"reinit.pooler=true but {type(model).__name__} has no pooler")
    return module_targets(model, pool)


def plan_reinit(model: nn.Module, scheme: Mapping[str, Any]) -> list[ResetTarget]:
    """The targets of a scheme config (`{"name": ..., **params}`), validated against the model."""
    name = scheme.get("name", "none")
    if name == "none":
        return pooler_targets(model) if scheme.get("pooler", False) else []
    if name == "progressive":
        return progressive_targets(model, scheme.get("k"), pooler=scheme.get("pooler", False))
    raise ReinitlabError(
        f"reinit.name={name!r} is not a known scheme; known: ['none', 'progressive']"
    )


def apply_reset(
    model: nn.Module, targets: list[ResetTarget], std: float, seed: int
) -> dict[str, int]:
    """Overwrite the targets in place; returns {parameter name: number of values reset}.

    Values are drawn on the CPU from a generator seeded with `seed` alone, in target order,
    so the draw is identical on any device and independent of the global RNG.
    """
    params = dict(model.named_parameters())
    unknown = [t.name for t in targets if t.name not in params]
    if unknown:
        raise ValueError(f"reset targets not in the model: {unknown[:5]}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    counts: dict[str, int] = {}
    with torch.no_grad():
        for t in targets:
            param = params[t.name]
            view = param if t.index is None else param[t.index]
            if t.init == "normal":
                fresh = torch.empty(view.shape, dtype=torch.float32)
                nn.init.trunc_normal_(
                    fresh,
                    mean=0.0,
                    std=std,
                    a=-TRUNC_SIGMAS * std,
                    b=TRUNC_SIGMAS * std,
                    generator=gen,
                )
            elif t.init == "zeros":
                fresh = torch.zeros(view.shape)
            elif t.init == "ones":
                fresh = torch.ones(view.shape)
            else:
                raise ValueError(f"unknown init {t.init!r} for {t.name}")
            view.copy_(fresh.to(device=param.device, dtype=param.dtype))
            counts[t.name] = counts.get(t.name, 0) + view.numel()
    return counts
