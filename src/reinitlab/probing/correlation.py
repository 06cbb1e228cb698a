"""Does "what a layer encodes" predict "what a layer contributes"? One number for the report.

`probe_reinit_spearman` pairs, for every encoder layer ℓ that has both numbers,
- the probe metric of layer ℓ (the output of encoder layer ℓ, `layer_ℓ` in probe results), and
- the drop when re-initializing from ℓ: baseline metric − metric of the progressive run with
  `reinit.k = ℓ` (layers ℓ..L re-initialized),
and returns scipy's Spearman rank correlation between them. Positive ρ: layers whose
features already probe well are the ones whose loss hurts most. The embeddings (layer 0)
have no progressive k and are left out.

`reinit_curve(records)` turns the result records of a progressive sweep (one task, one model)
into the `curve` and `baseline` this needs, averaging over seeds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reinitlab.errors import ReinitlabError


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
    records: Iterable[Mapping[str, Any]], metric: str = "val/primary", which: str = "best"
) -> tuple[dict[int, float], float]:
    """({k: mean metric over seeds}, baseline mean) from result records of one task and model.

    Progressive runs with k = 1..L make the curve; the baseline is every run that resets no
    layer (`reinit=none`, or progressive with k unset or k = L+1). `which` is "best" or "final".
    """
    by_k: dict[int, list[float]] = defaultdict(list)
    base: list[float] = []
    seen: set[tuple[Any, Any]] = set()
    for rec in records:
        seen.add((rec.get("task"), rec.get("model")))
        value = float(rec[which]["metrics"][metric])
        scheme, num_layers = rec["scheme"], int(rec["num_layers"])
        k = scheme.get("k") if scheme.get("name") == "progressive" else None
        if scheme.get("name") == "none" or k is None or k == num_layers + 1:
            if not scheme.get("pooler"):
                base.append(value)
        elif scheme.get("name") == "progressive":
            by_k[int(k)].append(value)
    if len(seen) > 1:
        raise ReinitlabError(f"records mix tasks/models {sorted(seen, key=str)}; pass one of each")
    if not base:
        raise ReinitlabError("no baseline run among the records (reinit=none or reinit.k unset)")
    curve = {k: sum(v) / len(v) for k, v in sorted(by_k.items())}
    return curve, sum(base) / len(base)
