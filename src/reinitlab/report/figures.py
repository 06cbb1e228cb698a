"""The report's figures (matplotlib, PNG + SVG): layer curves, head heatmaps, bars, data-size
curves and weight-movement heatmaps. Each function draws one figure and returns its paths."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import CenteredNorm  # noqa: E402

from reinitlab.deltas.figure import head_label, head_movement_figure, layer_label  # noqa: E402
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


def figure_title(task, model, size, factors, chain="none") -> str:
    """A figure's title: task · model · train size, plus other varied config and the chain."""
    size_txt = "full train set" if size == "all" else f"{size} train examples"
    title = f"{task} · {model} · {size_txt}" + (f" · {factors}" if factors else "")
    return title + (f" · after {chain}" if chain != "none" else "")


def _curve(ax, cells, baseline, num_layers, color, label, delta_cells=None) -> None:
    """One task's layer curve on `ax`: mean per k, the baseline as the point k = L+1 (its own
    marker), the CI band where the cells have intervals, * where Holm p < 0.05.

    Artists carry gids (`ci-band`, `ci-baseline`, `significance`), so a test can tell from
    the SVG what was drawn."""
    cells = cells.sort_values("scheme.k")
    k = cells["scheme.k"].astype(float).to_numpy()
    mean = cells["mean"].to_numpy(dtype=float)
    lo, hi = cells["ci_low"].to_numpy(dtype=float), cells["ci_high"].to_numpy(dtype=float)
    if baseline is not None and num_layers is not None:
        xb = float(num_layers + 1)
        k_all = np.append(k, xb)
        mean_all = np.append(mean, baseline["mean"])
        lo, hi = np.append(lo, baseline["ci_low"]), np.append(hi, baseline["ci_high"])
    else:
        k_all, mean_all = k, mean
    ax.plot(k_all, mean_all, "-", color=color, label=label)
    ax.plot(k, mean, "o", color=color)
    band = np.isfinite(lo) & np.isfinite(hi)
    if band.any():
        ax.fill_between(
            k_all[band], lo[band], hi[band], color=color, alpha=0.2, lw=0, gid="ci-band"
        )
    if baseline is not None and num_layers is not None:
        ax.axhline(baseline["mean"], color=color, ls="--", lw=0.8, alpha=0.7)
        err = None
        if np.isfinite(baseline["ci_low"]):
            err = [
                [baseline["mean"] - baseline["ci_low"]],
                [baseline["ci_high"] - baseline["mean"]],
            ]
        container = ax.errorbar(
            [num_layers + 1], [baseline["mean"]], yerr=err, fmt="s", color=color, ms=8,
            mfc="white", mew=2, capsize=4,
        )  # fmt: skip
        if err is not None:
            for line in container.lines[2]:
                line.set_gid("ci-baseline")
    if delta_cells is not None and not delta_cells.empty and "p_holm" in delta_cells:
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
                    color=color,
                    gid="significance",
                )


def _k_axis(ax, ks, num_layers) -> None:
    ticks = sorted({int(v) for v in ks} | ({num_layers + 1} if num_layers else set()))
    names = [
        f"k={v}\n(baseline)" if num_layers and v == num_layers + 1 else f"k={v}" for v in ticks
    ]
    ax.set_xticks(ticks, names, fontsize=8)
    ax.set_xlabel("k: encoder layers k..L re-initialized (k=1: all; k=L+1: none, the baseline)")


def layer_curve(
    cells: pd.DataFrame,
    baseline: pd.Series | None,
    delta_cells: pd.DataFrame,
    metric: str,
    title: str,
    out_dir: Path,
    name: str,
) -> list[Path]:
    """Primary metric vs k (layers k..L re-initialized): mean, CI band where the cells have
    intervals, and the baseline as the point k = L+1 (with its interval) and a reference line."""
    num_layers = _num_layers(cells)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _curve(ax, cells, baseline, num_layers, "C0", "mean over seeds", delta_cells)
    _k_axis(ax, cells["scheme.k"], num_layers)
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_dir, name)


def _num_layers(cells: pd.DataFrame) -> int | None:
    if "num_layers" not in cells or cells["num_layers"].isna().all():
        return None
    return int(cells["num_layers"].dropna().iloc[0])


def layer_curves_all_tasks(
    curves: list[tuple[str, str, pd.DataFrame, pd.Series | None, pd.DataFrame]],
    title: str,
    out_dir: Path,
    name: str,
) -> list[Path]:
    """Every task's layer curve on one axis (task, metric, cells, baseline, delta cells): the
    study's overview, as the papers draw it; each task's own primary metric on the y axis."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    ks: set[int] = set()
    num_layers = None
    for i, (task, metric, cells, baseline, dcells) in enumerate(curves):
        num_layers = _num_layers(cells) or num_layers
        _curve(ax, cells, baseline, _num_layers(cells), f"C{i % 10}", f"{task} ({metric})", dcells)
        ks |= {int(v) for v in cells["scheme.k"]}
    _k_axis(ax, ks, num_layers)
    ax.set_ylabel("dev metric (each task's primary metric)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_dir, name)


def head_grid(cells: pd.DataFrame) -> pd.DataFrame:
    """The layers x heads table of mean paired delta (rows `Layer 1`.., columns `H1`..)."""
    table = cells.pivot_table(index="head_layer", columns="head_index", values="mean_delta")
    table = table.sort_index().sort_index(axis=1)
    table.index = [layer_label(v) for v in table.index]
    table.columns = [head_label(v) for v in table.columns]
    return table


def shared_halfrange(values) -> float:
    """The largest |value| (1.0 when there is none): one zero-centred scale for many grids."""
    v = np.asarray(values, dtype=float)
    v = np.abs(v[np.isfinite(v)])
    return float(v.max()) if v.size and v.max() > 0 else 1.0


def head_heatmap(
    cells: pd.DataFrame,
    metric: str,
    title: str,
    out_dir: Path,
    name: str,
    halfrange: float | None = None,
) -> list[Path]:
    """Mean delta vs baseline per (layer, head); diverging colours centred at 0 (`halfrange`:
    the scale shared by the grids a report compares; default: this grid's largest |delta|),
    values shown, * on cells with Holm p < 0.05 (gid `significance` in the SVG)."""
    table = cells.pivot_table(index="head_layer", columns="head_index", values="mean_delta")
    table = table.sort_index().sort_index(axis=1)
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.7 * values.shape[1] + 2), 0.6 * values.shape[0] + 1.8)
    )
    if halfrange is None:
        halfrange = shared_halfrange(values)
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
                gid="significance" if star else None,
            )
    ax.set_xticks(range(len(table.columns)), [head_label(h) for h in table.columns])
    ax.set_yticks(range(len(table.index)), [layer_label(layer) for layer in table.index])
    ax.set_xlabel("attention head")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=f"Δ dev {metric} vs baseline")
    return save(fig, out_dir, name)


def delta_bars(
    cells: pd.DataFrame, metric: str, title: str, out_dir: Path, name: str
) -> list[Path]:
    """Mean delta vs baseline per variant (blocks, permutations, layer lists), CI as error bars."""
    cells = cells.reset_index(drop=True)
    y = cells["mean_delta"].to_numpy(dtype=float)
    has_ci = np.isfinite(cells["ci_low"].to_numpy(dtype=float))
    lo = np.where(has_ci, y - cells["ci_low"], np.nan)
    hi = np.where(has_ci, cells["ci_high"] - y, np.nan)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(cells) + 2), 4.0))
    colors = ["C3" if v < 0 else "C0" for v in y]
    ax.bar(range(len(cells)), y, color=colors)
    if has_ci.any():
        idx = np.flatnonzero(has_ci)
        ax.errorbar(idx, y[idx], yerr=[lo[idx], hi[idx]], fmt="none", ecolor="black",
                    capsize=3, gid="ci-band")  # fmt: skip
    if "p_holm" in cells:
        for i, p in enumerate(cells["p_holm"].to_numpy(dtype=float)):
            if np.isfinite(p) and p < SIGNIFICANT:
                ax.annotate("*", (i, y[i]), textcoords="offset points", xytext=(0, 4),
                            ha="center", fontsize=14, gid="significance")  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    labels = [_short_label(r) for _, r in cells.iterrows()]
    ax.set_xticks(range(len(cells)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"Δ dev {metric} vs baseline")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out_dir, name)


def _short_label(row: pd.Series) -> str:
    return str(row.get("label") or row.get("variant") or row.get("scheme"))


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
    layer_names = [layer_label(i + 1) for i in range(width)]
    width = 3 + 3 * max(2.5, 0.45 * len(layer_names))
    fig, axes = plt.subplots(
        1, 3, figsize=(width, 0.4 * len(rows) + 2.2), squeeze=False, layout="constrained"
    )
    mats = [
        np.array([d["layer"].get(part, [np.nan] * len(layer_names)) for _, d in rows], float)
        for part in parts
    ]
    finite = np.concatenate([m[np.isfinite(m)] for m in mats])
    # one scale for the three panels, so attention and feed-forward movement compare by colour
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for i, (ax, part, m) in enumerate(zip(axes[0], parts, mats, strict=True)):
        im = ax.imshow(m, cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(layer_names)), layer_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels if i == 0 else [], fontsize=7)
        ax.set_title(f"{part}: ‖θ−θ_start‖ / ‖θ_start‖", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="relative movement (shared scale)")
    fig.suptitle(title, fontsize=10)
    return save(fig, out_dir, name)


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
