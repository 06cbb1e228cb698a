"""Does "what a layer encodes" predict "what a layer contributes"? One number for the report.

`probe_reinit_spearman` pairs, for every encoder layer ℓ that has both numbers,
- the probe metric of layer ℓ (the output of encoder layer ℓ, `layer_ℓ` in probe results), and
- the drop when re-initializing from ℓ: baseline metric − metric of the progressive run with
  `reinit.k = ℓ` (layers ℓ..L re-initialized),
and returns scipy's Spearman rank correlation between them. Positive ρ: layers whose
features already probe well are the ones whose loss hurts most. The embeddings (layer 0)
have no progressive k and are left out.

`reinit_curve(records)` turns the result records of a study (one task, one model) into the
`curve` and `baseline` this needs, averaging over seeds. Only the runs on that curve count: the
progressive runs of one figure (by default plain re-initialization of whole layers, not
`mode=zero`, not a subset of `parts`, not `pooler=true`) and the true baselines, as the report
defines them; a study's other runs (heads, blocks, layers, ...) are left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import figure_label, scheme_is_baseline

# The report figure (`figure_key`) whose runs make the reinit curve by default: progressive,
# mode=reinit, whole layers, no pooler.
CURVE_FIGURE = "progressive"


def _layer_number(name: str | int) -> int | None:
    if isinstance(name, int):
        return name
    if name == "embeddings":
        return 0
    if name.startswith("layer_"):
        return int(name.split("_", 1)[1])
    raise ReinitlabError(f"unknown layer name {name!r}; expected 'embeddings' or 'layer_NN'")


def probe_reinit_spearman(
    probe_metric: Mapping[str | int, float] | Sequence[float],
    curve: Mapping[int, float],
    baseline: float,
) -> dict[str, Any]:
    """Spearman ρ between probe metric of layer ℓ and the drop baseline − curve[ℓ].

    probe_metric: {layer: metric} keyed by layer number (1..L) or name ('layer_03'), or a
        list in probe-result order (index 0 = embeddings, index ℓ = layer ℓ).
    curve: {k: dev metric of the progressive run re-initializing layers k..L} (mean over
        seeds if there are several); k = L+1 (the baseline) may be present and is ignored.
    baseline: the dev metric of the untouched model.

    Returns {"rho", "pvalue", "n", "layers", "probe", "drop"}; rho and pvalue are NaN when
    fewer than 3 layers pair up or either side is constant (no ranking to correlate).
    """
    from scipy.stats import spearmanr

    if isinstance(probe_metric, Mapping):
        by_layer = {_layer_number(k): float(v) for k, v in probe_metric.items()}
    else:
        by_layer = {i: float(v) for i, v in enumerate(probe_metric)}
    layers = sorted(
        ell
        for ell in by_layer
        if ell >= 1 and ell in curve and math.isfinite(by_layer[ell]) and math.isfinite(curve[ell])
    )
    probe = [by_layer[ell] for ell in layers]
    drop = [float(baseline) - float(curve[ell]) for ell in layers]
    rho = pvalue = float("nan")
    if len(layers) >= 3 and len(set(probe)) > 1 and len(set(drop)) > 1:
        res = spearmanr(probe, drop)
        rho, pvalue = float(res.statistic), float(res.pvalue)
    return {
        "rho": rho,
        "pvalue": pvalue,
        "n": len(layers),
        "layers": layers,
        "probe": probe,
        "drop": drop,
    }


def reinit_curve(
    records: Iterable[Mapping[str, Any]],
    metric: str = "val/primary",
    which: str = "best",
    figure: str = CURVE_FIGURE,
) -> tuple[dict[int, float], float]:
    """({k: mean metric over seeds}, baseline mean) from result records of one task and model.

    The curve is the progressive runs with k = 1..L drawn in `figure` (the report's figure
    name: `progressive`, `progressive zero`, `progressive [attention]`, ...); the baseline is
    every run that changes nothing (`reinitlab.reinit.scheme_is_baseline`: reinit=none, k = L+1 or
    unset, any scheme selecting nothing; never a pooler-only run). Other runs are ignored:
    a head or block run is no baseline, a `mode=zero` run no point of the reinit curve.
    `which` is "best" or "final".
    """
    if figure.split(" ", 1)[0] != "progressive":
        raise ReinitlabError(
            f"reinit_curve(figure={figure!r}): the curve is drawn from progressive runs; "
            f"give a progressive figure such as {CURVE_FIGURE!r} or 'progressive zero'"
        )
    by_k: dict[int, list[float]] = defaultdict(list)
    base: list[float] = []
    seen: set[tuple[Any, Any]] = set()
    for rec in records:
        seen.add((rec.get("task"), rec.get("model")))
        scheme, num_layers = rec["scheme"], int(rec["num_layers"])
        if scheme_is_baseline(scheme, num_layers):
            base.append(float(rec[which]["metrics"][metric]))
        elif scheme.get("name") == "progressive" and figure_label("progressive", scheme) == figure:
            by_k[int(scheme["k"])].append(float(rec[which]["metrics"][metric]))
    if len(seen) > 1:
        raise ReinitlabError(f"records mix tasks/models {sorted(seen, key=str)}; pass one of each")
    if not base:
        raise ReinitlabError("no baseline run among the records (reinit=none or reinit.k unset)")
    curve = {k: sum(v) / len(v) for k, v in sorted(by_k.items())}
    return curve, sum(base) / len(base)
