"""The report's figures (matplotlib, PDF + PNG + SVG): layer curves with their paired
differences, head heatmaps, bars, data-size curves and weight-movement heatmaps. Each function
draws one figure in the house style (`reinitlab.mplstyle`) and returns its paths."""

from __future__ import annotations

import functools
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
from reinitlab.report.stats import SEQUENTIAL_TEST, decided  # noqa: E402
from reinitlab.report.transfer import chain_order  # noqa: E402

SIGNIFICANT = 0.05
# One house style for every figure: print sizes, fonts readable there, text kept as text.
STYLE = Path(__file__).with_name("reinitlab.mplstyle")
COLUMN_IN = 3.3  # one column of a two-column paper, inches
PAGE_IN = 7.0  # the full text width
DPI = 300  # PNG resolution a journal takes
FORMATS = ("png", "svg", "pdf")


def styled(draw):
    """Run a drawing function under the house style (a context, so importing the report never
    changes another program's matplotlib defaults)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.style.context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def slug(*parts) -> str:
    """A file-name-safe name from the non-empty `parts`, joined by `_`."""
    text = "_".join(str(p) for p in parts if str(p))
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write `fig` as `<name>.png` (DPI), `.svg` and `.pdf` (vector, text as text) in `out_dir`
    (atomically) and close it; returns [png, svg, pdf]."""
    paths = [out_dir / f"{name}.{ext}" for ext in FORMATS]
    try:
        with plt.style.context(STYLE):
            for path in paths:
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, dpi=DPI, format=path.suffix[1:])
    finally:
        plt.close(fig)
    return paths


def figure_title(task, model, size, factors, chain="none") -> str:
    """A figure's title: task · model · train size, plus other varied config and the chain."""
    size_txt = "full train set" if size == "all" else f"{size} train examples"
    title = f"{task} · {model} · {size_txt}" + (f" · {factors}" if factors else "")
    return title + (f" · after {chain}" if chain != "none" else "")


_CI_NAMES = {
    "t": "95% t CI",
    "bootstrap": "95% bootstrap CI",
    SEQUENTIAL_TEST: "seed rule's interval",  # adjusted for its looks: the caption says
}


def _ci_text(methods) -> str:
    """`mean ± 95% t CI` for the legend, from the cells' `ci_method`s (none: `mean`)."""
    drawn = sorted({str(m) for m in methods if isinstance(m, str) and not m.startswith("none")})
    return "mean ± " + " / ".join(_CI_NAMES.get(m, m) for m in drawn) if drawn else "mean"


def _n_text(n) -> str:
    values = sorted({int(v) for v in n if np.isfinite(v)})
    if not values:
        return "n=?"
    return f"n={values[0]}" if len(values) == 1 else f"n={values[0]}–{values[-1]}"


def _errorbars(ax, x, mean, lo, hi, color, gid, **kw) -> None:
    """Error bars at the x values that have an interval, and only there (no band joins them
    across k values that were never run)."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return
    # an interval that misses its point (decisions.json older than a rewritten record) is
    # drawn to the point rather than failing the report
    below, above = np.maximum(mean[ok] - lo[ok], 0.0), np.maximum(hi[ok] - mean[ok], 0.0)
    container = ax.errorbar(
        x[ok], mean[ok], yerr=[below, above], fmt="none",
        ecolor=color, elinewidth=1.0, **kw,
    )  # fmt: skip
    for line in container.lines[2]:
        line.set_gid(gid)


def _curve(ax, cells, baseline, num_layers, color, label, base_label="baseline") -> None:
    """One task's layer curve on `ax`: mean per k that was run with its interval as error
    bars, and the baseline drawn once: its point at k = L+1 (open square, its own interval)
    plus a dashed reference line across the axis.

    Artists carry gids (`ci-bars`, `ci-baseline`), so a test can tell from the SVG what was
    drawn."""
    cells = cells.sort_values("scheme.k")
    k = cells["scheme.k"].astype(float).to_numpy()
    mean = cells["mean"].to_numpy(dtype=float)
    lo, hi = cells["ci_low"].to_numpy(dtype=float), cells["ci_high"].to_numpy(dtype=float)
    text = f"{label}: {_ci_text(cells.get('ci_method', []))}, {_n_text(cells['n'])}"
    ax.plot(k, mean, "o-", color=color, label=text, zorder=3)
    _errorbars(ax, k, mean, lo, hi, color, "ci-bars", zorder=2)
    if baseline is None or num_layers is None:
        return
    xb = float(num_layers + 1)
    b_mean = float(baseline["mean"])
    ax.plot([k[-1], xb], [mean[-1], b_mean], ":", color=color, lw=0.8)  # the gap to k = L+1
    ax.axhline(b_mean, color=color, ls="--", lw=0.7, alpha=0.6)
    b_text = _ci_text([baseline.get("ci_method")])
    ax.plot([xb], [b_mean], "s", color=color, mfc="white", mew=1.2, ms=5, zorder=3,
            label=f"{base_label} (k=L+1, dashed): {b_text}, n={int(baseline['n'])}")  # fmt: skip
    _errorbars(
        ax, np.array([xb]), np.array([b_mean]), np.array([float(baseline["ci_low"])]),
        np.array([float(baseline["ci_high"])]), color, "ci-baseline", zorder=2,
    )  # fmt: skip


def _paired(ax, cells, delta_cells, color, label, offset=0.0) -> bool:
    """The paired effect of each k: mean of (run − baseline run of the same seed and subset)
    with its paired interval as error bars where n supports one, * where Holm p < 0.05 (gid
    `significance`), † over the comparisons the sequential seed rule decided (`decided`; gid
    `decision`; in the place of *, which a comparison under the rule never gets); returns
    whether anything was drawn."""
    if delta_cells is None or delta_cells.empty:
        return False
    k_of = cells.set_index("variant")["scheme.k"]
    d = delta_cells[delta_cells["variant"].isin(k_of.index) & (delta_cells["n_pairs"] > 0)]
    if d.empty:
        return False
    d = d.assign(k=d["variant"].map(k_of).astype(float)).sort_values("k")
    x = d["k"].to_numpy(dtype=float) + offset
    y = d["mean_delta"].to_numpy(dtype=float)
    lo, hi = d["ci_low"].to_numpy(dtype=float), d["ci_high"].to_numpy(dtype=float)
    ci = _ci_text(d.get("ci_method", []))
    ax.plot(x, y, "o", color=color, label=f"{label}: {ci}, {_n_text(d['n_pairs'])} pairs")
    _errorbars(ax, x, y, lo, hi, color, "paired-ci")
    top = np.where(np.isfinite(hi), hi, y)
    if "p_holm" in d:
        p = d["p_holm"].to_numpy(dtype=float)
        for xi, ti, pi in zip(x, top, p, strict=True):
            if np.isfinite(pi) and pi < SIGNIFICANT:
                ax.annotate("*", (xi, ti), textcoords="offset points", xytext=(0, 1),
                            ha="center", fontsize=10, color=color, gid="significance")  # fmt: skip
    # above the interval, where * would be: below it, a far-negative variant's mark fell onto
    # the k axis's tick labels; bold on a white ground, so a mark that lands on the zero line
    # reads as a dagger, not a plus
    for xi, ti, mark in zip(x, top, decided(d), strict=True):
        if mark:
            ax.annotate("†", (xi, ti), textcoords="offset points", xytext=(0, 2),
                        ha="center", va="bottom", color=color, fontweight="bold",
                        bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none"},
                        gid="decision")  # fmt: skip
    return True


def _k_axis(ax, ks, num_layers, label=True) -> None:
    ticks = sorted({int(v) for v in ks} | ({num_layers + 1} if num_layers else set()))
    names = [
        f"k={v}\n(baseline)" if num_layers and v == num_layers + 1 else f"k={v}" for v in ticks
    ]
    ax.set_xticks(ticks, names)
    if label:
        ax.set_xlabel("k: encoder layers k..L re-initialized (k=1: all; k=L+1: none)")


def _zero_line(ax) -> None:
    ax.axhline(0.0, color="black", lw=0.7, zorder=1)


@styled
def layer_curve(
    cells: pd.DataFrame,
    baseline: pd.Series | None,
    delta_cells: pd.DataFrame,
    metric: str,
    title: str,
    out_dir: Path,
    name: str,
) -> list[Path]:
    """Two panels, the full text width: (a) primary metric vs k (layers k..L re-initialized),
    mean and interval at each k that was run, the baseline as the point k = L+1 and a
    reference line; (b) the paired difference variant − baseline per k with its paired
    interval, a zero line, * where Holm p < 0.05 and † over the rule's decisions."""
    num_layers = _num_layers(cells)
    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(PAGE_IN, 2.9), layout="constrained")
    _curve(ax, cells, baseline, num_layers, "C0", "re-initialized")
    _k_axis(ax, cells["scheme.k"], num_layers)
    ax.set_ylabel(f"dev {metric}")
    ax.set_title("(a) dev metric", loc="left")
    _paired(ax_d, cells, delta_cells, "C0", "(b) variant − baseline")
    _zero_line(ax_d)
    _k_axis(ax_d, cells["scheme.k"], num_layers)
    ax_d.set_ylabel(f"Δ dev {metric}\n(variant − baseline)")  # one line overran the axes
    ax_d.set_title("(b) paired difference (same seed and subset)", loc="left")
    handles = [h for a in (ax, ax_d) for h in zip(*a.get_legend_handles_labels(), strict=True)]
    fig.legend(*zip(*handles, strict=True), loc="outside lower center", ncols=2)
    fig.suptitle(title)
    return save(fig, out_dir, name)


def _num_layers(cells: pd.DataFrame) -> int | None:
    if "num_layers" not in cells or cells["num_layers"].isna().all():
        return None
    return int(cells["num_layers"].dropna().iloc[0])


@styled
def layer_curves_all_tasks(
    curves: list[tuple[str, str, pd.DataFrame, pd.Series | None, pd.DataFrame]],
    title: str,
    out_dir: Path,
    name: str,
) -> list[Path]:
    """Every task's layer curve on one axis (task, metric, cells, baseline, delta cells): the
    study's overview, as the papers draw it; each task's own primary metric on the y axis,
    and below it every task's paired difference vs its baseline, † as in `layer_curve`."""
    fig, (ax, ax_d) = plt.subplots(2, 1, figsize=(PAGE_IN, 5.6), sharex=True, layout="constrained")
    ks: set[int] = set()
    num_layers = None
    width = 0.08 * (len(curves) - 1)
    for i, (task, metric, cells, baseline, dcells) in enumerate(curves):
        num_layers = _num_layers(cells) or num_layers
        color = f"C{i % 10}"
        _curve(ax, cells, baseline, _num_layers(cells), color, f"{task} ({metric})",
               f"{task} baseline")  # fmt: skip
        offset = -width / 2 + 0.08 * i  # side by side, so the bars do not overlap
        _paired(ax_d, cells, dcells, color, f"{task} ({metric})", offset)
        ks |= {int(v) for v in cells["scheme.k"]}
    _k_axis(ax, ks, num_layers, label=False)
    _k_axis(ax_d, ks, num_layers)
    _zero_line(ax_d)
    ax.set_ylabel("dev metric (each task's primary)")
    ax.set_title("(a) dev metric; open squares and dashed lines: each task's baseline", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax_d.set_ylabel("Δ dev metric (variant − baseline)")
    ax_d.set_title("(b) paired difference (same seed and subset)", loc="left")
    if ax_d.get_legend_handles_labels()[0]:
        ax_d.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title)
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


@styled
def head_heatmap(
    cells: pd.DataFrame,
    metric: str,
    title: str,
    out_dir: Path,
    name: str,
    halfrange: float | None = None,
    values_shown: bool = True,
) -> list[Path]:
    """Mean paired delta (variant − baseline) per (layer, head); diverging colours centred at
    0 (`halfrange`: the scale shared by the grids a report compares; default: this grid's
    largest |delta|), the colour bar labelled, each cell's value when `values_shown`, * on
    cells with Holm p < 0.05 (gid `significance` in the SVG)."""
    table = cells.pivot_table(index="head_layer", columns="head_index", values="mean_delta")
    table = table.sort_index().sort_index(axis=1)
    values = table.to_numpy(dtype=float)
    width = min(PAGE_IN, max(COLUMN_IN, 0.45 * values.shape[1] + 1.8))
    fig, ax = plt.subplots(figsize=(width, 0.3 * values.shape[0] + 1.3), layout="constrained")
    cell_font = 6 if values.shape[1] <= 8 else 5
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
            if not values_shown:
                if star:
                    ax.text(j, i, star, ha="center", va="center", gid="significance")
                continue
            ax.text(
                j,
                i,
                f"{v:+.3f}{star}",
                ha="center",
                va="center",
                fontsize=cell_font,
                color="white" if abs(v) > 0.6 * halfrange else "black",
                gid="significance" if star else None,
            )
    ax.set_xticks(range(len(table.columns)), [head_label(h) for h in table.columns])
    ax.set_yticks(range(len(table.index)), [layer_label(layer) for layer in table.index])
    ax.set_xlabel("attention head")
    ax.set_ylabel("encoder layer")
    ax.grid(False)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=f"Δ dev {metric} (variant − baseline)")
    return save(fig, out_dir, name)


@styled
def delta_bars(
    cells: pd.DataFrame, metric: str, title: str, out_dir: Path, name: str
) -> list[Path]:
    """Mean delta vs baseline per variant (blocks, permutations, layer lists), CI as error bars."""
    cells = cells.reset_index(drop=True)
    y = cells["mean_delta"].to_numpy(dtype=float)
    has_ci = np.isfinite(cells["ci_low"].to_numpy(dtype=float))
    lo = np.where(has_ci, y - cells["ci_low"], np.nan)
    hi = np.where(has_ci, cells["ci_high"] - y, np.nan)
    width = min(PAGE_IN, max(COLUMN_IN, 0.35 * len(cells) + 1.5))
    fig, ax = plt.subplots(figsize=(width, 2.8), layout="constrained")
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
                            ha="center", fontsize=10, gid="significance")  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    labels = [_short_label(r) for _, r in cells.iterrows()]
    ax.set_xticks(range(len(cells)), labels, rotation=45, ha="right")
    ax.set_ylabel(f"Δ dev {metric} (variant − baseline)")
    ax.set_title(title)
    ax.grid(axis="x", visible=False)
    return save(fig, out_dir, name)


def _short_label(row: pd.Series) -> str:
    return str(row.get("label") or row.get("variant") or row.get("scheme"))


@styled
def data_size_curve(
    cells: pd.DataFrame, metric: str, title: str, out_dir: Path, name: str
) -> list[Path]:
    """Primary metric vs training-set size, one line per scheme variant, CI bands."""
    fig, ax = plt.subplots(figsize=(PAGE_IN / 2 + 0.5, 2.8), layout="constrained")
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
    ax.set_title(title)
    ax.legend()
    return save(fig, out_dir, name)


# "all" is not a sum of the other two panels: one norm over every parameter of the layer
MOVEMENT_TITLES = {
    "all": "whole layer (attention, FFN, layer norms)",
    "attention": "attention only",
    "ffn": "feed-forward only",
}


@styled
def movement_heatmaps(
    rows: list[tuple[str, dict]], title: str, out_dir: Path, name: str
) -> list[Path]:
    """Relative weight movement per layer (rows: variants, mean over seeds) for the whole layer,
    attention and feed-forward, from the deltas matrices in the records."""
    parts = ["all", "attention", "ffn"]
    labels = [label for label, _ in rows]
    width = len(rows[0][1]["layer"]["all"])
    layer_names = [layer_label(i + 1) for i in range(width)]
    fig, axes = plt.subplots(
        1, 3, figsize=(PAGE_IN, 0.3 * len(rows) + 1.6), squeeze=False, layout="constrained"
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
        ax.set_xticks(range(len(layer_names)), layer_names, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels if i == 0 else [], fontsize=8)
        ax.set_title(MOVEMENT_TITLES[part])
        ax.grid(False)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="‖θ−θ_start‖ / ‖θ_start‖")
    fig.suptitle(title)
    return save(fig, out_dir, name)


def head_movement_heatmap(
    label: str, head: list[list[float]], title: str, out_dir: Path, name: str
) -> list[Path]:
    """Save one variant's per-head movement heatmap (layers x heads, 1-based)."""
    fig = styled(head_movement_figure)(head, f"{title}\n{label}: per-head relative movement")
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


@styled
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
    size = (min(PAGE_IN, 1.2 * len(chains) + 2.0), 0.6 * len(tasks) + 1.5)
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
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    ax.grid(False)
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
                fontsize=6,
                fontweight="bold" if better else "normal",
            )
    ax.set_xticks(range(len(chains)), xlabels, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("intermediate task(s)")
    ax.set_ylabel("final task")
    ax.set_title(f"{title}\nmean dev metric [95% CI]; ▲ = above direct fine-tuning")
    first = save(fig, out_dir, f"transfer_{name}")
    # delta figure
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    ax.grid(False)
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
                    fontsize=7,
                    color="white" if abs(deltas[i, j]) > 0.6 * half else "black",
                )
    ax.set_xticks(range(len(chains)), xlabels, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("intermediate task(s)")
    ax.set_ylabel("final task")
    ax.set_title(f"{title}\nΔ vs direct fine-tuning (paired by seed); * = Holm p < 0.05")
    fig.colorbar(im, ax=ax, label="Δ dev metric")
    second = save(fig, out_dir, f"transfer_delta_{name}")
    return [first, second]
