"""Probing beside the reinit curve: per-layer probe metric and hidden-state
variability of the baseline runs (records' `probe` results, `before` = the pretrained model at
fit start, `after` = fine-tuned), on the same layer axis as the progressive curve, and
Spearman's ρ between "probe metric of layer ℓ" and "drop when re-initializing from ℓ"."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

STAGES = ("before", "after")


def _layer_number(name) -> int | None:
    if name == "embeddings":
        return 0
    if isinstance(name, str) and name.startswith("layer_"):
        return int(name.split("_", 1)[1])
    return None


def probe_table(g_runs: pd.DataFrame, records_by_dir: dict[str, dict]) -> pd.DataFrame:
    """Per stage and layer: mean probe metric and variability over the baseline runs' records."""
    rows = []
    for run_dir in g_runs.loc[g_runs["is_baseline"], "run_dir"]:
        probe = records_by_dir[run_dir].get("probe")
        if not isinstance(probe, dict):
            continue
        for stage in STAGES:
            res = probe.get(stage)
            if not isinstance(res, dict):
                continue
            variability = res.get("variability") or [None] * len(res["layer_names"])
            for name, metric, nc in zip(
                res["layer_names"], res["metric"], variability, strict=True
            ):
                layer = _layer_number(name)
                if layer is not None:
                    rows.append(
                        {
                            "stage": stage,
                            "layer": layer,
                            "probe_metric": metric,
                            "variability": math.nan if nc is None else nc,
                        }
                    )
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    return (
        frame.groupby(["stage", "layer"])
        .agg(
            n=("probe_metric", "size"),
            probe_metric=("probe_metric", "mean"),
            variability=("variability", "mean"),
        )
        .reset_index()
    )


def spearman_vs_reinit(table: pd.DataFrame, curve: dict[int, float], baseline: float) -> dict:
    """ρ between the pretrained (`before`) probe metric of layer ℓ and baseline − metric(k=ℓ)."""
    from reinitlab.probing.correlation import probe_reinit_spearman

    before = table[table["stage"] == "before"]
    metric = {int(r.layer): float(r.probe_metric) for r in before.itertuples()}
    return probe_reinit_spearman(metric, curve, baseline)


def probe_figure(
    table: pd.DataFrame,
    curve: dict[int, float],
    baseline: float | None,
    metric: str,
    title: str,
    out_dir: Path,
    name: str,
) -> list[Path]:
    """Three panels on one layer axis: reinit curve (metric vs k), probe metric per layer
    (before/after fine-tuning), hidden-state variability per layer (log scale)."""
    from reinitlab.report.figures import COLUMN_IN, STYLE, plt, save

    with plt.style.context(STYLE):
        fig, axes = plt.subplots(
            3, 1, figsize=(COLUMN_IN + 1, 5.5), sharex=True, layout="constrained"
        )
        _draw_probe_panels(axes, table, curve, baseline, metric, title)
    return save(fig, out_dir, name)


def _draw_probe_panels(axes, table, curve, baseline, metric, title) -> None:
    from matplotlib.ticker import MaxNLocator

    if curve:
        ks = sorted(curve)
        axes[0].plot(ks, [curve[k] for k in ks], "o-", color="C0", label="reinit layers k..L")
    if baseline is not None:
        axes[0].axhline(baseline, color="C3", ls="--", label="baseline")
    axes[0].set_ylabel(f"fine-tuned dev {metric}")
    axes[0].legend()
    for i, stage in enumerate(STAGES):
        s = table[table["stage"] == stage].sort_values("layer")
        if s.empty:
            continue
        label = "pretrained (before)" if stage == "before" else "fine-tuned (after)"
        axes[1].plot(s["layer"], s["probe_metric"], "o-", color=f"C{i + 1}", label=label)
        v = s[np.isfinite(s["variability"]) & (s["variability"] > 0)]
        if not v.empty:
            axes[2].plot(v["layer"], v["variability"], "o-", color=f"C{i + 1}", label=label)
    axes[1].set_ylabel(f"linear probe dev {metric}")
    axes[1].legend()
    axes[2].set_ylabel("variability NC (lower = specialised)")
    if axes[2].lines:
        axes[2].set_yscale("log")
        axes[2].legend()
    axes[2].set_xlabel("layer ℓ (0 = embeddings) · reinit: k = ℓ")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title(title)
