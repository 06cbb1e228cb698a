"""The report's figures (matplotlib, PNG + SVG): layer curves, head heatmaps, bars, data-size
curves and weight-movement heatmaps. Each function draws one figure and returns its paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import CenteredNorm  # noqa: E402

from reinitlab.report.io import atomic_path  # noqa: E402
from reinitlab.report.transfer import chain_order  # noqa: E402

SIGNIFICANT = 0.05


def slug(*parts) -> str:
    """A file-name-safe name from the non-empty `parts`, joined by `_`."""
    text = "_".join(str(p) for p in parts if str(p))
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write `fig` as `<name>.png` and `<name>.svg` in `out_dir` (atomically) and close it;
    returns [png, svg]."""
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    try:
        for path in paths:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix[1:])
    finally:
        plt.close(fig)
    return paths


def pretty(figure: str) -> str:
    """'heads {"mode":"reinit"}' -> 'heads (mode=reinit)': a figure key for titles."""
    name, _, params = figure.partition(" ")
    if not params:
        return name
    try:
        items = json.loads(params).items()
    except ValueError:
        return figure
    shown = (f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in items)
    return f"{name} (" + ", ".join(shown) + ")"


def figure_title(task, model, size, factors, chain="none") -> str:
    """A figure's title: task · model · train size, plus other varied config and the chain."""
    size_txt = "full train set" if size == "all" else f"{size} train examples"
    title = f"{task} · {model} · {size_txt}" + (f" · {factors}" if factors else "")
    return title + (f" · after {chain}" if chain != "none" else "")


def layer_curve(
    cells: pd.DataFrame,
    baseline: pd.Series | None,
    delta_cells: pd.DataFrame,
    metric: str,
    title: str,
    out_dir: Path,
    name: str,
) -> list[Path]:
    """Primary metric vs k (layers k..L re-initialized), mean with CI band; baseline as a line."""
    cells = cells.sort_values("scheme.k")
    k = cells["scheme.k"].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(k, cells["mean"], "o-", color="C0", label="re-initialized layers k..L (mean)")
    if cells["ci_low"].notna().any():
        ax.fill_between(
            k, cells["ci_low"], cells["ci_high"], color="C0", alpha=0.2, label="95% bootstrap CI"
        )
    if baseline is not None:
        ax.axhline(baseline["mean"], color="C3", ls="--", label="baseline (no reinit)")
        if np.isfinite(baseline["ci_low"]):
            ax.axhspan(baseline["ci_low"], baseline["ci_high"], color="C3", alpha=0.1)
    if not delta_cells.empty and "p_holm" in delta_cells:
        sig = delta_cells[delta_cells["p_holm"] < SIGNIFICANT]
        for _, row in sig.iterrows():
            match = cells[cells["variant"] == row["variant"]]
            if not match.empty:
                ax.annotate(
                    "*",
                    (float(match["scheme.k"].iloc[0]), match["mean"].iloc[0]),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=14,
                )
    ax.set_xlabel("k: encoder layers k..L re-initialized (k=1: all)")
    ax.set_ylabel(f"dev {metric}")
    ax.set_xticks(k)
    ax.set_xticklabels([str(int(v)) for v in k])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_dir, name)


def head_heatmap(
    cells: pd.DataFrame, metric: str, title: str, out_dir: Path, name: str
) -> list[Path]:
    """Mean delta vs baseline per (layer, head); diverging colours centred at 0, values shown."""
    table = cells.pivot_table(index="head_layer", columns="head_index", values="mean_delta")
    table = table.sort_index().sort_index(axis=1)
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.7 * values.shape[1] + 2), 0.6 * values.shape[0] + 1.8)
    )
    finite = values[np.isfinite(values)]
    halfrange = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    im = ax.imshow(values, cmap="RdBu", norm=CenteredNorm(0.0, halfrange), aspect="auto")
    sig = cells.set_index(["head_layer", "head_index"])["p_holm"] if "p_holm" in cells else None
    for i, layer in enumerate(table.index):
        for j, head in enumerate(table.columns):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            star = ""
            if (
                sig is not None
                and (layer, head) in sig.index
                and sig.loc[(layer, head)] < SIGNIFICANT
            ):
                star = "*"
            ax.text(
                j,
                i,
                f"{v:+.3f}{star}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if abs(v) > 0.6 * halfrange else "black",
            )
    ax.set_xticks(range(len(table.columns)), [str(int(h)) for h in table.columns])
    ax.set_yticks(range(len(table.index)), [str(int(layer)) for layer in table.index])
    ax.set_xlabel("head (1-based)")
    ax.set_ylabel("layer (1-based)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=f"Δ dev {metric} vs baseline")
    return save(fig, out_dir, name)


def delta_bars(
    cells: pd.DataFrame, metric: str, title: str, out_dir: Path, name: str
) -> list[Path]:
    """Mean delta vs baseline per variant (blocks, permutations, layer lists), CI as error bars."""
    cells = cells.reset_index(drop=True)
    y = cells["mean_delta"].to_numpy(dtype=float)
    lo = np.where(np.isfinite(cells["ci_low"]), y - cells["ci_low"], 0.0)
    hi = np.where(np.isfinite(cells["ci_high"]), cells["ci_high"] - y, 0.0)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(cells) + 2), 4.0))
    colors = ["C3" if v < 0 else "C0" for v in y]
    ax.bar(range(len(cells)), y, yerr=[lo, hi], color=colors, capsize=3)
    ax.axhline(0, color="black", lw=0.8)
    labels = [_short_label(r) for _, r in cells.iterrows()]
    ax.set_xticks(range(len(cells)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"Δ dev {metric} vs baseline")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out_dir, name)


def _short_label(row: pd.Series) -> str:
    label = str(row.get("label", ""))
    if label and label != row.get("scheme"):
        return label
    variant = str(row.get("variant", ""))
    return variant.removeprefix(f"{row.get('scheme')} ") or variant


def data_size_curve(
    cells: pd.DataFrame, metric: str, title: str, out_dir: Path, name: str
) -> list[Path]:
    """Primary metric vs training-set size, one line per scheme variant, CI bands."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (_, g) in enumerate(cells.groupby("variant", sort=True)):
        g = g[g["size"] != "all"].assign(x=lambda t: t["size"].astype(int)).sort_values("x")
        if g.empty:
            continue
        label = "baseline" if g["is_baseline"].all() else _short_label(g.iloc[0])
        ax.plot(g["x"], g["mean"], "o-", color=f"C{i % 10}", label=label)
        if g["ci_low"].notna().any():
            ax.fill_between(g["x"], g["ci_low"], g["ci_high"], color=f"C{i % 10}", alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("training examples (data.max_train_samples)")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, out_dir, name)


def movement_heatmaps(
    rows: list[tuple[str, dict]], title: str, out_dir: Path, name: str
) -> list[Path]:
    """Relative weight movement per layer (rows: variants, mean over seeds) for the whole layer,
    attention and feed-forward, from the deltas matrices in the records."""
    parts = ["all", "attention", "ffn"]
    labels = [label for label, _ in rows]
    width = len(rows[0][1]["layer"]["all"])
    layer_names = rows[0][1].get("layer_names") or []
    if len(layer_names) != width:
        layer_names = [str(i + 1) for i in range(width)]
    width = 3 + 3 * max(2.5, 0.45 * len(layer_names))
    fig, axes = plt.subplots(
        1, 3, figsize=(width, 0.4 * len(rows) + 2.2), squeeze=False, layout="constrained"
    )
    for i, (ax, part) in enumerate(zip(axes[0], parts, strict=True)):
        m = np.array([d["layer"].get(part, [np.nan] * len(layer_names)) for _, d in rows], float)
        im = ax.imshow(m, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(layer_names)), layer_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels if i == 0 else [], fontsize=7)
        ax.set_title(f"{part}: ‖θ−θ_start‖ / ‖θ_start‖", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return save(fig, out_dir, name)


def head_movement_figure(head: list[list[float]], title: str):
    """Per-head relative movement as a layers x heads heatmap (1-based labels). Shared by the
    report and the DeltaTracker's W&B image, so both draw the same picture."""
    m = np.asarray(head, dtype=float)
    fig, ax = plt.subplots(figsize=(0.6 * m.shape[1] + 2.5, 0.5 * m.shape[0] + 1.8))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(m.shape[1]), [str(i + 1) for i in range(m.shape[1])])
    ax.set_yticks(range(m.shape[0]), [str(i + 1) for i in range(m.shape[0])])
    ax.set_xlabel("head (1-based)")
    ax.set_ylabel("layer (1-based)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    return fig


def head_movement_heatmap(
    label: str, head: list[list[float]], title: str, out_dir: Path, name: str
) -> list[Path]:
    """Save one variant's per-head movement heatmap (layers x heads, 1-based)."""
    fig = head_movement_figure(head, f"{title}\n{label}: per-head relative movement")
    return save(fig, out_dir, name)


def mean_deltas(records: list[dict]) -> dict:
    """Element-wise mean of several records' deltas matrices (the seeds of one variant)."""
    ds = [r["deltas"] for r in records if isinstance(r.get("deltas"), dict)]
    out = {"layer_names": ds[0].get("layer_names"), "layer": {}}
    for part in ("all", "attention", "ffn"):
        arrays = [np.asarray(d["layer"][part], float) for d in ds if part in d.get("layer", {})]
        if arrays and all(a.shape == arrays[0].shape for a in arrays):
            out["layer"][part] = np.mean(arrays, axis=0).tolist()
    heads = [np.asarray(d["head"], float) for d in ds if d.get("head") is not None]
    if heads and all(h.shape == heads[0].shape for h in heads):
        out["head"] = np.mean(heads, axis=0).tolist()
    return out


def transfer_heatmaps(
    cells: pd.DataFrame, title: str, out_dir: Path, name: str
) -> list[list[Path]]:
    """Two figures: the mean metric per (final task, chain), coloured per row (tasks have
    different metrics) with ▲ where better than direct fine-tuning; and the paired delta vs
    direct fine-tuning, diverging colours centred at 0, * = Holm p < 0.05.

    Long because both figures are drawn on one (task, chain) grid with the same axes and
    labels; split, each half would rebuild the grid.
    """
    tasks = sorted(cells["task"].unique())
    chains = chain_order(cells["chain"])
    cell = cells.set_index(["task", "chain"])
    shape = (len(tasks), len(chains))
    size = (1.6 * len(chains) + 2.5, 0.8 * len(tasks) + 1.8)
    xlabels = ["none (direct)" if c == "none" else c for c in chains]

    def get(col):
        m = np.full(shape, np.nan)
        for i, t in enumerate(tasks):
            for j, c in enumerate(chains):
                if (t, c) in cell.index:
                    m[i, j] = cell.loc[(t, c), col]
        return m

    means, lo, hi, deltas, p_holm = (
        get(c) for c in ("mean", "ci_low", "ci_high", "mean_delta", "p_holm")
    )
    # mean figure: colour = position within the row's range
    span = np.nanmax(means, axis=1, keepdims=True) - np.nanmin(means, axis=1, keepdims=True)
    colour = (means - np.nanmin(means, axis=1, keepdims=True)) / np.where(span > 0, span, 1.0)
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(colour, cmap="Greens", vmin=-0.2, vmax=1.2, aspect="auto")
    for i in range(shape[0]):
        for j in range(shape[1]):
            if not np.isfinite(means[i, j]):
                continue
            text = f"{means[i, j]:.3f}"
            if np.isfinite(lo[i, j]):
                text += f"\n[{lo[i, j]:.3f}, {hi[i, j]:.3f}]"
            better = chains[j] != "none" and bool(
                cell.loc[(tasks[i], chains[j]), "better_than_direct"]
            )
            ax.text(
                j,
                i,
                ("▲ " if better else "") + text,
                ha="center",
                va="center",
                fontsize=7,
                fontweight="bold" if better else "normal",
            )
    ax.set_xticks(range(len(chains)), xlabels, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("intermediate task(s)")
    ax.set_ylabel("final task")
    ax.set_title(f"{title}\nmean dev metric [95% CI]; ▲ = above direct fine-tuning", fontsize=9)
    first = save(fig, out_dir, f"transfer_{name}")
    # delta figure
    fig, ax = plt.subplots(figsize=size)
    finite = deltas[np.isfinite(deltas)]
    half = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    im = ax.imshow(deltas, cmap="RdBu", norm=CenteredNorm(0.0, half), aspect="auto")
    for i in range(shape[0]):
        for j in range(shape[1]):
            if np.isfinite(deltas[i, j]):
                star = "*" if np.isfinite(p_holm[i, j]) and p_holm[i, j] < SIGNIFICANT else ""
                ax.text(
                    j,
                    i,
                    f"{deltas[i, j]:+.3f}{star}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if abs(deltas[i, j]) > 0.6 * half else "black",
                )
    ax.set_xticks(range(len(chains)), xlabels, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("intermediate task(s)")
    ax.set_ylabel("final task")
    ax.set_title(
        f"{title}\nΔ vs direct fine-tuning (paired by seed); * = Holm p < 0.05", fontsize=9
    )
    fig.colorbar(im, ax=ax, label="Δ dev metric")
    second = save(fig, out_dir, f"transfer_delta_{name}")
    return [first, second]
