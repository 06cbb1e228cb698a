"""Scheme configs -> a validated, model-independent selection (pure Python, no weights).

`resolve_scheme` checks a `reinit/` config against the model's layer and head counts (read
from its config, before any weights load) and returns a `Selection`: 0-based layers, heads,
a layer order, ... `plan.plan_scheme` then turns it into tensors via the family adapter.

Users number layers and heads 1..L and 1..H, as the papers do. Every scheme's defaults select
nothing, which is the untouched baseline (like `progressive` with k = L+1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reinitlab.errors import ReinitlabError
from reinitlab.reinit.adapters import PARTS

SCHEMES = ("none", "progressive", "layers", "block", "heads", "permute", "embeddings")
MODES = ("reinit", "zero", "mask")
LAYER_SCHEMES = ("progressive", "layers", "block")  # the ones `parts` applies to


@dataclass(frozen=True)
class Selection:
    """What a scheme selects, 0-based. Empty everywhere = the baseline."""

    name: str
    mode: str = "reinit"
    layers: tuple[int, ...] = ()  # whole layers (restricted to `parts`) to reset
    parts: tuple[str, ...] = PARTS
    heads: tuple[tuple[int, int], ...] = ()  # (layer, head) pairs
    embeddings: bool = False
    pooler: bool = False
    order: tuple[int, ...] | None = None  # new layer order (permute); None = unchanged

    @property
    def is_baseline(self) -> bool:
        return not (self.layers or self.heads or self.embeddings or self.pooler) and (
            self.order is None or list(self.order) == sorted(self.order)
        )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_list(option: str, value: Any, allowed: str) -> list[int]:
    """An int or a non-empty list of ints (Hydra gives a list for `[1,4,7]`)."""
    values = [value] if _is_int(value) else value
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ReinitlabError(
            f"{option}={value!r}: give an integer or a non-empty list of integers in {allowed}"
        )
    if not all(_is_int(v) for v in values):
        raise ReinitlabError(f"{option}={value!r}: every entry must be an integer in {allowed}")
    return list(values)


def _check_range(option: str, values: list[int], top: int, what: str, model: str) -> None:
    bad = [v for v in values if not 1 <= v <= top]
    if bad:
        raise ReinitlabError(
            f"{option}={values if len(values) > 1 else values[0]!r} is out of range for {model}, "
            f"which has {top} {what}: allowed 1..{top} (1-based)"
        )


def check_progressive_k(k: int | None, num_layers: int, model_name: str = "the model") -> int:
    """Resolve and validate k (None = L+1 = baseline); the error names the layer count."""
    if k is None:
        return num_layers + 1
    if not _is_int(k) or not 1 <= k <= num_layers + 1:
        raise ReinitlabError(
            f"reinit.k={k!r} is out of range for {model_name}, which has {num_layers} encoder "
            f"layers: k must be an integer in 1..{num_layers + 1} (k=1 re-initializes every "
            f"layer, k={num_layers + 1} none: the baseline)"
        )
    return k


def _parts(scheme: Mapping[str, Any], name: str) -> tuple[str, ...]:
    parts = scheme.get("parts")
    if parts is None:
        return PARTS
    if name not in LAYER_SCHEMES:
        raise ReinitlabError(
            f"reinit.parts applies to the layer schemes {list(LAYER_SCHEMES)}, not to {name!r}"
        )
    values = [parts] if isinstance(parts, str) else parts
    if not isinstance(values, Sequence) or not values or any(p not in PARTS for p in values):
        raise ReinitlabError(
            f"reinit.parts={parts!r}: give one or more of {list(PARTS)} (null = the whole layer)"
        )
    return tuple(p for p in PARTS if p in values)


def _mode(scheme: Mapping[str, Any], name: str) -> str:
    mode = scheme.get("mode") or "reinit"
    if mode not in MODES:
        raise ReinitlabError(f"reinit.mode={mode!r} is not a mode; known: {list(MODES)}")
    if mode == "mask" and name != "heads":
        raise ReinitlabError(
            f"reinit.mode=mask ablates attention heads and works only with reinit=heads, "
            f"not {name!r}; use mode=reinit or mode=zero"
        )
    return mode


def _heads(
    scheme: Mapping[str, Any], num_layers: int, num_heads: int | None, model: str
) -> tuple[tuple[int, int], ...]:
    layer, head, pairs = scheme.get("layer"), scheme.get("head"), scheme.get("heads")
    heads_range = f"1..{num_heads}" if num_heads else "1..H"
    if pairs is not None:
        if layer is not None or head is not None:
            raise ReinitlabError(
                "give either reinit.heads (a list of [layer, head] pairs) or reinit.layer and "
                f"reinit.head, not both (got heads={pairs!r}, layer={layer!r}, head={head!r})"
            )
        ok = (
            isinstance(pairs, Sequence)
            and not isinstance(pairs, str)
            and pairs
            and all(
                isinstance(p, Sequence) and len(p) == 2 and all(_is_int(x) for x in p)
                for p in pairs
            )
        )
        if not ok:
            raise ReinitlabError(
                f"reinit.heads={pairs!r}: give a non-empty list of [layer, head] pairs of "
                f"1-based integers, e.g. [[12,6],[11,3]]"
            )
        selected = [(int(a), int(b)) for a, b in pairs]
    elif layer is None and head is None:
        return ()
    elif layer is None or head is None:
        raise ReinitlabError(
            f"reinit=heads needs both reinit.layer and reinit.head (got layer={layer!r}, "
            f"head={head!r}); leave both null for the baseline"
        )
    else:
        layers = _int_list("reinit.layer", layer, f"1..{num_layers}")
        heads = _int_list("reinit.head", head, heads_range)
        selected = [(a, b) for a in layers for b in heads]
    _check_range(
        "reinit.layer", sorted({a for a, _ in selected}), num_layers, "encoder layers", model
    )
    if num_heads:
        bad = sorted({b for _, b in selected if not 1 <= b <= num_heads})
        if bad:
            raise ReinitlabError(
                f"reinit.head={bad if len(bad) > 1 else bad[0]!r} is out of range for {model}, "
                f"which has {num_heads} attention heads per layer: allowed 1..{num_heads} (1-based)"
            )
    return tuple(sorted({(a - 1, b - 1) for a, b in selected}))


def _order(scheme: Mapping[str, Any], num_layers: int, model: str) -> tuple[int, ...] | None:
    order, seed = scheme.get("order"), scheme.get("permutation_seed")
    if order is not None and seed is not None:
        raise ReinitlabError(
            f"give reinit.order or reinit.permutation_seed, not both (got order={order!r}, "
            f"permutation_seed={seed!r})"
        )
    if seed is not None:
        if not _is_int(seed):
            raise ReinitlabError(f"reinit.permutation_seed={seed!r}: give an integer")
        gen = torch.Generator().manual_seed(int(seed))
        return tuple(torch.randperm(num_layers, generator=gen).tolist())
    if order is None:
        return None
    ok = (
        isinstance(order, Sequence)
        and not isinstance(order, str)
        and all(_is_int(v) for v in order)
        and sorted(order) == list(range(1, num_layers + 1))
    )
    if not ok:
        raise ReinitlabError(
            f"reinit.order={order!r} is not a permutation of the layers 1..{num_layers} of "
            f"{model}: list every layer number exactly once, e.g. "
            f"{list(range(num_layers, 0, -1))}"
        )
    return tuple(v - 1 for v in order)


def resolve_scheme(
    scheme: Mapping[str, Any],
    num_layers: int,
    num_heads: int | None = None,
    model_name: str = "the model",
) -> Selection:
    """Validate a scheme config (`{"name": ..., **params}`) against the model's sizes."""
    name = scheme.get("name", "none")
    if name not in SCHEMES:
        raise ReinitlabError(f"reinit={name!r} is not a known scheme; known: {list(SCHEMES)}")
    mode = _mode(scheme, name)
    parts = _parts(scheme, name)
    common = {"name": name, "mode": mode, "parts": parts, "pooler": bool(scheme.get("pooler"))}
    L = num_layers
    if name == "progressive":
        k = check_progressive_k(scheme.get("k"), L, model_name)
        return Selection(**common, layers=tuple(range(k - 1, L)))
    if name == "layers":
        value = scheme.get("layers")
        if value is None:
            return Selection(**common)
        layers = _int_list("reinit.layers", value, f"1..{L}")
        _check_range("reinit.layers", layers, L, "encoder layers", model_name)
        return Selection(**common, layers=tuple(sorted({v - 1 for v in layers})))
    if name == "block":
        start, width = scheme.get("start"), scheme.get("width", 3)
        if not _is_int(width) or width < 1:
            raise ReinitlabError(f"reinit.width={width!r}: give a positive integer")
        if start is None:
            return Selection(**common)
        if not _is_int(start) or not 1 <= start <= L - width + 1:
            raise ReinitlabError(
                f"reinit.start={start!r} with reinit.width={width} is out of range for "
                f"{model_name}, which has {L} encoder layers: the block start..start+width-1 "
                f"must lie in 1..{L}, so start must be in 1..{L - width + 1}"
                if width <= L
                else f"reinit.width={width} is wider than {model_name}'s {L} encoder layers"
            )
        return Selection(**common, layers=tuple(range(start - 1, start - 1 + width)))
    if name == "heads":
        return Selection(**common, heads=_heads(scheme, L, num_heads, model_name))
    if name == "permute":
        return Selection(**common, order=_order(scheme, L, model_name))
    if name == "embeddings":
        return Selection(**common, embeddings=True)
    return Selection(**common)  # none: at most the pooler


def _join(values) -> str:
    return ",".join(str(v) for v in values)


def scheme_label(name: str, params: Mapping[str, Any], num_layers: int) -> str:
    """A short readable label: `k=5`, `layers 1,4,7`, `block 4-6`, `L12H6`, `perm seed 3`,
    `embeddings`, with ` zero`/` mask`, ` [attention]` and ` +pooler` suffixes; an untouched
    model is `baseline`."""
    p = dict(params)
    label = None
    if name == "progressive":
        k = p.get("k") or num_layers + 1
        label = None if k == num_layers + 1 else f"k={k}"
    elif name == "layers" and p.get("layers") is not None:
        layers = p["layers"] if isinstance(p["layers"], Sequence) else [p["layers"]]
        label = f"layers {_join(layers)}"
    elif name == "block" and p.get("start") is not None:
        start, width = p["start"], p.get("width", 3)
        label = f"block {start}-{start + width - 1}"
    elif name == "heads":
        pairs = p.get("heads")
        if pairs is None and p.get("layer") is not None and p.get("head") is not None:
            ls = p["layer"] if isinstance(p["layer"], Sequence) else [p["layer"]]
            hs = p["head"] if isinstance(p["head"], Sequence) else [p["head"]]
            pairs = [(a, b) for a in ls for b in hs]
        if pairs:
            by_layer: dict[int, list[int]] = {}
            for a, b in pairs:
                by_layer.setdefault(a, []).append(b)
            label = "+".join(f"L{a}H{_join(hs)}" for a, hs in by_layer.items())
    elif name == "permute":
        if p.get("permutation_seed") is not None:
            label = f"perm seed {p['permutation_seed']}"
        elif p.get("order") is not None:
            label = f"perm {_join(p['order'])}"
    elif name == "embeddings":
        label = "embeddings"
    if label is None:
        return "pooler" if p.get("pooler") else "baseline"
    if p.get("parts"):
        parts = [p["parts"]] if isinstance(p["parts"], str) else p["parts"]
        label += f" [{'+'.join(parts)}]"
    if p.get("mode") not in (None, "reinit"):
        label += f" {p['mode']}"
    if p.get("pooler"):
        label += " +pooler"
    return label
