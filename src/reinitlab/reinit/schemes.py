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

MODES = ("reinit", "zero", "mask")


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
        """Nothing is reset, masked or moved (an identity order counts as unchanged)."""
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
    twice = sorted({v for v in values if list(values).count(v) > 1})
    if twice:
        raise ReinitlabError(
            f"{option}={list(values)!r} lists {_join(twice)} more than once: list each value "
            f"once (in {allowed}), so that the run's label and job identity are its selection"
        )
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


def _parts(scheme: Mapping[str, Any], impl: Any) -> tuple[str, ...]:
    parts = scheme.get("parts")
    if parts is None:
        return PARTS
    if not impl.layer_scheme:
        layer_schemes = [n for n, s in SCHEMES.items() if s.layer_scheme]
        raise ReinitlabError(
            f"reinit.parts applies to the layer schemes {layer_schemes}, not to {impl.name!r}"
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
        twice = sorted({p for p in selected if selected.count(p) > 1})
        if twice:
            raise ReinitlabError(
                f"reinit.heads={pairs!r} lists {', '.join(f'[{a},{b}]' for a, b in twice)} more "
                "than once: list each [layer, head] pair once"
            )
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


class Scheme:
    """One reinit scheme, and everything the project knows about it: how to validate and
    resolve its parameters against a model, how to label a run, whether a parameter set is
    the baseline, which values a preset sweeps, and which report figure shows it.

    Adding a scheme = a subclass decorated with `@register` + a `conf/reinit/<name>.yaml`;
    the sweeper (baselines), `status` and the report find it here. Parameters arrive as in
    the config: layers and heads numbered 1..L and 1..H."""

    name: str = ""
    layer_scheme = False  # `reinit.parts` applies (whole layers are selected)
    position: tuple[str, ...] = ()  # parameters placing a run on its figure's axis
    figure = "bars"  # the report's figure: layer_curve | head_heatmap | bars
    preset: str | None = None  # the `${reinitlab_sweep:...}` name of its preset sweep
    extra_params: tuple[str, ...] = ()  # options beyond `position` and the common ones

    def options(self) -> tuple[str, ...]:
        """Every `reinit.*` key this scheme reads; any other key is refused, so a typo such
        as `+reinit.kk=3` cannot silently run the baseline."""
        common = ("mode", "pooler", *(("parts",) if self.layer_scheme else ()))
        return ("name", *self.position, *self.extra_params, *common)

    def select(self, p: Mapping[str, Any], num_layers: int, num_heads: int | None,
               model: str, common: dict[str, Any]) -> Selection:  # fmt: skip
        """The validated selection (errors name the option, the value and what is allowed)."""
        raise NotImplementedError

    def label(self, p: Mapping[str, Any], num_layers: int) -> str | None:
        """The run's short label, None when the parameters select nothing."""
        return None

    def is_baseline(self, p: Mapping[str, Any], num_layers: int | None = None) -> bool:
        """Whether these parameters select nothing (without the model when `num_layers` is
        None: every positional parameter unset)."""
        if p.get("pooler"):
            return False
        if num_layers is not None:
            return self.label(p, num_layers) is None
        return bool(self.position) and all(p.get(k) is None for k in self.position)

    def sweep(self, num_layers: int, num_heads: int, width: int = 3) -> str:
        """Hydra sweep syntax of its preset, baseline first."""
        raise ReinitlabError(f"reinit={self.name} has no preset sweep")


SCHEMES: dict[str, Scheme] = {}


def register(cls: type[Scheme]) -> type[Scheme]:
    """Class decorator: make a scheme known by its `name`."""
    SCHEMES[cls.name] = cls()
    return cls


def get_scheme(name: Any) -> Scheme:
    """The registered scheme called `name`; the error lists the known ones."""
    if name not in SCHEMES:
        raise ReinitlabError(f"reinit={name!r} is not a known scheme; known: {list(SCHEMES)}")
    return SCHEMES[name]


def _join(values) -> str:
    return ",".join(str(v) for v in values)


def _as_list(value) -> list:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


@register
class NoneScheme(Scheme):
    """The untouched model (the pooler, at most)."""

    name = "none"

    def select(self, p, num_layers, num_heads, model, common):
        """Nothing but the common options (the pooler, at most)."""
        return Selection(**common)

    def is_baseline(self, p, num_layers=None):
        """Always the baseline unless it resets the pooler."""
        return not p.get("pooler")


@register
class Progressive(Scheme):
    """Layers k..L, the papers' main experiment; k = L+1 (or null) is the baseline."""

    name = "progressive"
    layer_scheme = True
    position = ("k",)
    figure = "layer_curve"
    preset = "progressive"

    def select(self, p, num_layers, num_heads, model, common):
        """Layers k..L (0-based k-1..L-1); k is checked against 1..L+1."""
        k = check_progressive_k(p.get("k"), num_layers, model)
        return Selection(**common, layers=tuple(range(k - 1, num_layers)))

    def label(self, p, num_layers):
        """`k=<k>`; None for k = L+1 or unset (nothing reset)."""
        k = p.get("k") or num_layers + 1
        return None if k == num_layers + 1 else f"k={k}"

    def sweep(self, num_layers, num_heads, width=3):
        """Every k from 1 to L+1 (the baseline, last)."""
        return ",".join(str(k) for k in range(1, num_layers + 2))  # L+1 = nothing


@register
class Layers(Scheme):
    """Any list of layers."""

    name = "layers"
    layer_scheme = True
    position = ("layers",)

    def select(self, p, num_layers, num_heads, model, common):
        """The listed layers (1-based, as given), checked and made 0-based."""
        value = p.get("layers")
        if value is None:
            return Selection(**common)
        layers = _int_list("reinit.layers", value, f"1..{num_layers}")
        _check_range("reinit.layers", layers, num_layers, "encoder layers", model)
        return Selection(**common, layers=tuple(sorted({v - 1 for v in layers})))

    def label(self, p, num_layers):
        """`layers 1,4,7`; None when no layers are given."""
        if p.get("layers") is None:
            return None
        return f"layers {_join(_as_list(p['layers']))}"


@register
class Block(Scheme):
    """A block of `width` consecutive layers from `start`."""

    name = "block"
    layer_scheme = True
    position = ("start",)
    extra_params = ("width",)
    preset = "blocks"

    def select(self, p, num_layers, num_heads, model, common):
        """Layers start..start+width-1 (1-based), within 1..L; nothing when start is unset."""
        L = num_layers
        start, width = p.get("start"), p.get("width", 3)
        if not _is_int(width) or width < 1:
            raise ReinitlabError(f"reinit.width={width!r}: give a positive integer")
        if start is None:
            return Selection(**common)
        if not _is_int(start) or not 1 <= start <= L - width + 1:
            raise ReinitlabError(
                f"reinit.start={start!r} with reinit.width={width} is out of range for "
                f"{model}, which has {L} encoder layers: the block start..start+width-1 "
                f"must lie in 1..{L}, so start must be in 1..{L - width + 1}"
                if width <= L
                else f"reinit.width={width} is wider than {model}'s {L} encoder layers"
            )
        return Selection(**common, layers=tuple(range(start - 1, start - 1 + width)))

    def label(self, p, num_layers):
        """`block <first>-<last>` (1-based, inclusive); None when start is unset."""
        if p.get("start") is None:
            return None
        start, width = p["start"], p.get("width", 3)
        return f"block {start}-{start + width - 1}"

    def sweep(self, num_layers, num_heads, width=3):
        """null (baseline), then every start whose block of `width` layers fits."""
        return ",".join(["null", *(str(s) for s in range(1, num_layers - width + 2))])


@register
class Heads(Scheme):
    """Single attention heads (Q/K/V rows and output-projection columns), or masks."""

    name = "heads"
    position = ("layer", "head", "heads")
    figure = "head_heatmap"
    preset = "edge_heads"

    def select(self, p, num_layers, num_heads, model, common):
        """The (layer, head) pairs, from `heads` or `layer` x `head`, 0-based."""
        return Selection(**common, heads=_heads(p, num_layers, num_heads, model))

    def label(self, p, num_layers):
        """`L12H6+L11H3,4` (1-based, by layer); None when no head is given."""
        pairs = p.get("heads")
        if pairs is None and p.get("layer") is not None and p.get("head") is not None:
            pairs = [(a, b) for a in _as_list(p["layer"]) for b in _as_list(p["head"])]
        if not pairs:
            return None
        by_layer: dict[int, list[int]] = {}
        for a, b in pairs:
            by_layer.setdefault(a, []).append(b)
        return "+".join(f"L{a}H{_join(hs)}" for a, hs in by_layer.items())

    def sweep(self, num_layers, num_heads, width=3):
        """null (baseline), then every head of the first two and last two layers."""
        from reinitlab.reinit.sweeps import edge_layers

        pairs = [f"[[{a},{h}]]" for a in edge_layers(num_layers) for h in range(1, num_heads + 1)]
        return ",".join(["null", *pairs])


@register
class Permute(Scheme):
    """The pretrained layers in another order (an explicit order or a seeded permutation)."""

    name = "permute"
    position = ("order", "permutation_seed")

    def select(self, p, num_layers, num_heads, model, common):
        """The new layer order, explicit or drawn from `permutation_seed`."""
        return Selection(**common, order=_order(p, num_layers, model))

    def label(self, p, num_layers):
        """`perm seed <s>` or `perm <order>`; None when neither is set."""
        if p.get("permutation_seed") is not None:
            return f"perm seed {p['permutation_seed']}"
        if p.get("order") is not None:
            return f"perm {_join(p['order'])}"
        return None


@register
class Embeddings(Scheme):
    """The embedding layer (word, position, token type, its LayerNorm)."""

    name = "embeddings"

    def select(self, p, num_layers, num_heads, model, common):
        """The embedding layer; there is no position parameter."""
        return Selection(**common, embeddings=True)

    def label(self, p, num_layers):
        """Always `embeddings`: the scheme has one setting."""
        return "embeddings"

    def is_baseline(self, p, num_layers=None):
        """Never: the scheme always resets the embeddings."""
        return False


SCHEME_NAMES = tuple(SCHEMES)  # the built-in ones, in the README's order


def resolve_scheme(
    scheme: Mapping[str, Any],
    num_layers: int,
    num_heads: int | None = None,
    model_name: str = "the model",
) -> Selection:
    """Validate a scheme config (`{"name": ..., **params}`) against the model's sizes."""
    name = scheme.get("name", "none")
    impl = get_scheme(name)
    mode = _mode(scheme, name)
    parts = _parts(scheme, impl)
    unknown = sorted(set(scheme) - set(impl.options()))
    if unknown:
        raise ReinitlabError(
            f"reinit.{unknown[0]} is not an option of reinit={name}; its options: "
            f"{', '.join(o for o in impl.options() if o != 'name')}"
        )
    common = {"name": name, "mode": mode, "parts": parts, "pooler": bool(scheme.get("pooler"))}
    return impl.select(scheme, num_layers, num_heads, model_name, common)


def _suffix(p: Mapping[str, Any]) -> str:
    """` [attention]`, ` zero`/` mask`, ` +pooler`: the options any layer/head label carries."""
    out = ""
    if p.get("parts"):
        parts = [p["parts"]] if isinstance(p["parts"], str) else p["parts"]
        out += f" [{'+'.join(parts)}]"
    if p.get("mode") not in (None, "reinit"):
        out += f" {p['mode']}"
    if p.get("pooler"):
        out += " +pooler"
    return out


def scheme_label(name: str, params: Mapping[str, Any], num_layers: int) -> str:
    """A short readable label: `k=5`, `layers 1,4,7`, `block 4-6`, `L12H6`, `perm seed 3`,
    `embeddings`, with ` zero`/` mask`, ` [attention]` and ` +pooler` suffixes; an untouched
    model is `baseline`."""
    p = dict(params)
    label = get_scheme(name).label(p, num_layers)
    if label is None:
        return "pooler" if p.get("pooler") else "baseline"
    return label + _suffix(p)


def figure_label(name: str, params: Mapping[str, Any]) -> str:
    """The readable name of a figure's runs: the scheme without its position parameters, e.g.
    `progressive`, `heads mask`, `block width 2`, `progressive [attention]` -- what a report
    title says instead of the parameters' config."""
    impl = SCHEMES.get(name)
    position = impl.position if impl is not None else ()
    p = {k: v for k, v in params.items() if k not in (*position, "name", "label")}
    rest = "".join(
        f" {k} {_join(_as_list(v))}"
        for k, v in sorted(p.items())
        if k not in ("parts", "mode", "pooler") and v is not None
    )
    return f"{name}{rest}{_suffix(p)}"


def scheme_is_baseline(scheme: Mapping[str, Any], num_layers: int | None) -> bool:
    """Whether a record's scheme (its `scheme` dict: name, parameters, label) left the model
    as pretrained: none, progressive with k null or L+1, any scheme with its position unset
    (the registry decides), or a run labelled "baseline" -- unless `pooler: true`
    re-initialized the pooler (then it is a variant of its own, compared with the untouched
    baseline like any other). One definition for the report and the probe curves."""
    if scheme.get("pooler"):
        return False
    if scheme.get("label") == "baseline":
        return True
    impl = SCHEMES.get(scheme.get("name"))
    return impl is not None and impl.is_baseline(scheme, num_layers)
