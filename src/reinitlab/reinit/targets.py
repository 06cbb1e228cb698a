"""What a reset writes: `ResetTarget` (a parameter, or a slice of it, plus how to fill it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn


@dataclass(frozen=True)
class ResetTarget:
    """One parameter (or a slice of it) to overwrite.

    init: "normal" (truncated normal, std = initializer_range, cut at ±2σ), "zeros", "ones".
    index: a tuple of slices into the parameter, or None for the whole tensor.
    """

    name: str
    init: str
    index: tuple[slice, ...] | None = None


def prefix_of(model: nn.Module, module: nn.Module) -> str:
    """`module`'s dotted name inside `model`, with a trailing dot ("" for the model itself)."""
    for name, m in model.named_modules():
        if m is module:
            return f"{name}." if name else ""
    raise ValueError("module is not part of the model")


def module_targets(model: nn.Module, module: nn.Module) -> list[ResetTarget]:
    """Targets that re-initialize every Linear, LayerNorm and Embedding inside `module`.

    Linear/Embedding weights: truncated normal; biases: 0; LayerNorm: weight 1, bias 0 (BERT).
    """
    prefix = prefix_of(model, module)
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


def zeroed(targets: list[ResetTarget]) -> list[ResetTarget]:
    """The same targets filled with 0 (mode=zero: LayerNorm gains too; still trainable)."""
    return [replace(t, init="zeros") for t in targets]
