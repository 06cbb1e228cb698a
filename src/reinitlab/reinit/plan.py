"""A scheme's plan for one model: tensors to reset, a layer order, heads to mask."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from reinitlab.errors import ReinitlabError
from reinitlab.reinit.adapters import PARTS, EncoderAdapter
from reinitlab.reinit.apply import apply_reset
from reinitlab.reinit.masking import install_head_masks
from reinitlab.reinit.permute import permute_layers
from reinitlab.reinit.schemes import Selection, check_progressive_k, resolve_scheme
from reinitlab.reinit.targets import ResetTarget, module_targets, prefix_of, zeroed


@dataclass
class SchemePlan:
    """targets: written by `apply_reset`; layer_order (0-based) applied first; masked_heads
    (0-based (layer, head)) are forward hooks, installed separately (they are not weights)."""

    targets: list[ResetTarget] = field(default_factory=list)
    layer_order: list[int] | None = None
    masked_heads: list[tuple[int, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """1-based, for the result record."""
        return {
            "layer_order": None if self.layer_order is None else [i + 1 for i in self.layer_order],
            "masked_heads": [[a + 1, b + 1] for a, b in self.masked_heads],
        }


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers (any supported family)."""
    return EncoderAdapter(model).layers


def pooler_targets(model: nn.Module) -> list[ResetTarget]:
    """Every tensor of the pooler; an error for a model without one (`reinit.pooler=true`)."""
    pool = EncoderAdapter(model).pooler()
    if pool is None:
        raise ReinitlabError(f"reinit.pooler=true but {type(model).__name__} has no pooler")
    return module_targets(model, pool)


def progressive_targets(model: nn.Module, k: int | None, pooler: bool = False) -> list[ResetTarget]:
    """Layers k..L (1-based) and optionally the pooler. Embeddings are never touched."""
    adapter = EncoderAdapter(model)
    k = check_progressive_k(
        k, adapter.num_layers, getattr(model.config, "name_or_path", "the model")
    )
    return selection_targets(
        model,
        Selection(
            name="progressive", layers=tuple(range(k - 1, adapter.num_layers)), pooler=pooler
        ),
    )


def head_targets(model: nn.Module, layer: int, head: int) -> list[ResetTarget]:
    """Head `head` of layer `layer` (0-based): its q/k/v rows (weight and bias) and the matching
    input columns of the attention output projection (not its bias: it is shared by all heads)."""
    adapter = EncoderAdapter(model)
    rows = adapter.head_slice(head)
    q, k, v, out = adapter.attention_projections(layer)
    targets = []
    for proj in (q, k, v):
        p = prefix_of(model, proj)
        targets.append(ResetTarget(f"{p}weight", "normal", (rows,)))
        if proj.bias is not None:
            targets.append(ResetTarget(f"{p}bias", "zeros", (rows,)))
    targets.append(ResetTarget(f"{prefix_of(model, out)}weight", "normal", (slice(None), rows)))
    return targets


def selection_targets(model: nn.Module, sel: Selection) -> list[ResetTarget]:
    """The tensors a selection resets: embeddings, layers (whole or by part), heads' slices (not
    in mask mode: those are hooks), then the pooler; all zero targets in mode=zero."""
    adapter = EncoderAdapter(model)
    targets: list[ResetTarget] = []
    if sel.embeddings:
        targets += [t for m in adapter.embedding_modules() for t in module_targets(model, m)]
    for i in sel.layers:
        if tuple(sel.parts) == PARTS:  # the whole layer, whatever it contains
            targets += module_targets(model, adapter.layer(i))
            continue
        for module in adapter.part_modules(i, sel.parts):
            targets += module_targets(model, module)
    if sel.mode != "mask":
        for layer, head in sel.heads:
            targets += head_targets(model, layer, head)
    if sel.mode == "zero":
        targets = zeroed(targets)
    if sel.pooler:
        pool = pooler_targets(model)
        targets += zeroed(pool) if sel.mode == "zero" else pool
    return targets


def plan_scheme(model: nn.Module, scheme: Mapping[str, Any]) -> SchemePlan:
    """The plan of a scheme config (`{"name": ..., **params}`), validated against the model."""
    adapter = EncoderAdapter(model)
    name = getattr(model.config, "name_or_path", None) or type(model).__name__
    sel = resolve_scheme(scheme, adapter.num_layers, adapter.num_heads, name)
    return SchemePlan(
        targets=selection_targets(model, sel),
        layer_order=None if sel.order is None else list(sel.order),
        masked_heads=list(sel.heads) if sel.mode == "mask" else [],
    )


def plan_reinit(model: nn.Module, scheme: Mapping[str, Any]) -> list[ResetTarget]:
    """Only the weight resets of a scheme; refuses schemes that also reorder or mask, so no
    caller can silently drop those (use `plan_scheme` + `apply_plan` for them)."""
    plan = plan_scheme(model, scheme)
    if plan.layer_order is not None or plan.masked_heads:
        raise ReinitlabError(
            f"reinit={scheme.get('name')!r} with mode={scheme.get('mode', 'reinit')!r} changes "
            "the layer order or masks heads, which this code path does not support"
        )
    return plan.targets


def apply_plan(model: nn.Module, plan: SchemePlan, std: float, seed: int) -> dict[str, int]:
    """Reorder the layers, write the resets, install head masks. Returns reset counts."""
    if plan.layer_order is not None:
        permute_layers(model, plan.layer_order)
    counts = apply_reset(model, plan.targets, std=std, seed=seed)
    if plan.masked_heads:
        install_head_masks(model, plan.masked_heads)
    return counts
