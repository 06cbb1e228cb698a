"""The transfer matrix of an intermediate-task study: table and figure from a frame of runs.

Pure functions on a pandas DataFrame with one row per run and columns

* `task`          the final task (a matrix row),
* `intermediate`  the chain before it: a tuple/list of task names, or `''`/`()`/None for direct
                  fine-tuning (a matrix column; direct is the column `none`),
* `seed`          pairs a chained run with the direct run of the same seed,
* `primary`       the final task's primary dev metric.

`runs_from_records` builds that frame from result records (`reinitlab.results.read_results`).
`transfer_table` gives per cell: n, mean, 95% bootstrap CI over seeds, the direct baseline's
mean, the per-seed delta vs direct (mean + 95% bootstrap CI) with a paired test (paired t for
n < 6, Wilcoxon signed-rank for n >= 6) and a `better_than_direct` flag (mean delta > 0). The
statistics are `reinitlab.report.stats`'s, so these numbers equal the report's. `transfer_matrix`
pivots it to rows = final task, columns = intermediate task; `plot_transfer_matrix` draws both
panels (mean primary; delta vs direct) into PNG + SVG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reinitlab.atomic import _atomic_write
from reinitlab.report import stats

DIRECT = "none"
TABLE_COLUMNS = [
    "task",
    "intermediate",
    "n",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "direct_mean",
    "n_pairs",
    "delta_mean",
    "delta_ci_low",
    "delta_ci_high",
    "test",
    "statistic",
    "p_value",
    "better_than_direct",
]


def chain_label(intermediate: Any) -> str:
    """`none` for direct fine-tuning, else the chain's tasks joined by `>` (`mnli>mrpc`)."""
    if intermediate is None or (isinstance(intermediate, float) and math.isnan(intermediate)):
        return DIRECT
    if isinstance(intermediate, str):
        return intermediate if intermediate not in ("", DIRECT) else DIRECT
    items = [str(x) for x in intermediate]
    return ">".join(items) if items else DIRECT


def runs_from_records(records: Iterable[Mapping[str, Any]], which: str = "final") -> pd.DataFrame:
    """One row per completed record: task, intermediate (tuple), seed, primary (`final`/`best`)."""
    rows = [
        {
            "task": r["task"],
            "intermediate": tuple(r.get("intermediate") or ()),
            "seed": r["seed"],
            "primary": r[which]["metrics"]["val/primary"],
        }
        for r in records
        if r.get("status", "completed") == "completed"
    ]
    return pd.DataFrame(rows, columns=["task", "intermediate", "seed", "primary"])


def _normalise(runs: pd.DataFrame) -> pd.DataFrame:
    missing = {"task", "intermediate", "seed", "primary"} - set(runs.columns)
    if missing:
        raise ValueError(f"runs frame lacks column(s) {sorted(missing)}")
    out = runs[["task", "intermediate", "seed", "primary"]].copy()
    out["intermediate"] = [chain_label(x) for x in out["intermediate"]]
    return out


def _column_order(labels: Iterable[str]) -> list[str]:
    labels = set(labels)
    return ([DIRECT] if DIRECT in labels else []) + sorted(labels - {DIRECT})


def transfer_table(
    runs: pd.DataFrame,
    confidence: float = stats.CI_LEVEL,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (final task, intermediate chain); see the module docstring for the columns.

    Runs repeated for one (task, chain, seed) are averaged first, so a seed counts once. The
    bootstrap is seeded (`seed`), so the same runs give the same table.
    """

    def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
        low, high = stats.bootstrap_ci(values, confidence, n_resamples=n_resamples, seed=seed)
        return (float(np.mean(values)) if len(values) else float("nan")), low, high

    runs = _normalise(runs)
    per_seed = runs.groupby(["task", "intermediate", "seed"], as_index=False)["primary"].mean()
    rows = []
    for task in sorted(per_seed["task"].unique()):
        of_task = per_seed[per_seed["task"] == task]
        direct = of_task[of_task["intermediate"] == DIRECT].set_index("seed")["primary"]
        direct_mean = float(direct.mean()) if len(direct) else float("nan")
        for label in _column_order(of_task["intermediate"]):
            cell = of_task[of_task["intermediate"] == label].set_index("seed")["primary"]
            mean, low, high = mean_ci(cell.to_numpy(dtype=float))
            row = {
                "task": task,
                "intermediate": label,
                "n": len(cell),
                "mean": mean,
                "std": float(cell.std(ddof=1)) if len(cell) > 1 else float("nan"),
                "ci_low": low,
                "ci_high": high,
                "direct_mean": direct_mean,
                "n_pairs": 0,
                "delta_mean": float("nan"),
                "delta_ci_low": float("nan"),
                "delta_ci_high": float("nan"),
                "test": None,
                "statistic": float("nan"),
                "p_value": float("nan"),
                "better_than_direct": False,
            }
            if label != DIRECT and len(direct):
                seeds = cell.index.intersection(direct.index)
                run = cell.loc[seeds].to_numpy(dtype=float)
                base = direct.loc[seeds].to_numpy(dtype=float)
                deltas = run - base
                d_mean, d_low, d_high = mean_ci(deltas)
                test, stat, p = stats.paired_test(run, base)
                row.update(
                    n_pairs=len(deltas),
                    delta_mean=d_mean,
                    delta_ci_low=d_low,
                    delta_ci_high=d_high,
                    test=test,
                    statistic=stat,
                    p_value=p,
                    better_than_direct=bool(len(deltas) and d_mean > 0),
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def transfer_matrix(table: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """Wide matrix of one table column: rows = final task, columns = intermediate (`none` first)."""
    wide = table.pivot(index="task", columns="intermediate", values=value)
    wide = wide.reindex(columns=_column_order(wide.columns))
    wide.columns.name = "intermediate"
    wide.index.name = "task"
    return wide


def format_matrix(table: pd.DataFrame, digits: int = 3, alpha: float = 0.05) -> pd.DataFrame:
    """Text cells `mean [low, high]`, `+` when better than direct, `*` when also p < alpha."""

    def cell(r) -> str:
        text = f"{r['mean']:.{digits}f}"
        if not math.isnan(r["ci_low"]):
            text += f" [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"
        if r["better_than_direct"]:
            text += " +"
            if r["p_value"] < alpha:
                text += "*"
        return text

    t = table.copy()
    t["cell"] = t.apply(cell, axis=1)
    return transfer_matrix(t, "cell").fillna("")


def plot_transfer_matrix(
    table: pd.DataFrame, path: str | Path, title: str | None = None, alpha: float = 0.05
) -> list[Path]:
    """Heatmaps of the mean primary metric and of the delta vs direct; writes `<path>.png` and
    `<path>.svg` (any suffix of `path` is replaced) and returns both paths.

    Left: mean (± CI half-width); cells better than direct fine-tuning are outlined. Right:
    mean per-seed delta vs direct (diverging colours around 0), with the paired test's p.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    mean = transfer_matrix(table, "mean")
    half = (transfer_matrix(table, "ci_high") - transfer_matrix(table, "ci_low")) / 2
    better = transfer_matrix(table, "better_than_direct").fillna(False).astype(bool)
    delta = transfer_matrix(table, "delta_mean")
    pvals = transfer_matrix(table, "p_value")
    rows, cols = list(mean.index), list(mean.columns)
    fig = Figure(figsize=(3.2 + 1.9 * len(cols), 1.2 + 0.7 * len(rows)), layout="constrained")
    ax_mean, ax_delta = fig.subplots(1, 2)

    im = ax_mean.imshow(mean.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax_mean, label="mean primary")
    for i, task in enumerate(rows):
        for j, inter in enumerate(cols):
            m = mean.loc[task, inter]
            if pd.isna(m):
                continue
            h = half.loc[task, inter]
            text = f"{m:.3f}" + ("" if pd.isna(h) else f"\n±{h:.3f}")
            color = "black" if im.norm(m) > 0.6 else "white"  # readable on viridis
            ax_mean.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
            if better.loc[task, inter]:
                ax_mean.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
                )
    ax_mean.set_title("mean primary (red box: better than direct)")

    d = delta.to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
    lim = lim or 1.0
    im = ax_delta.imshow(d, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    fig.colorbar(im, ax=ax_delta, label="delta vs direct")
    for i, task in enumerate(rows):
        for j, inter in enumerate(cols):
            v = delta.loc[task, inter]
            if pd.isna(v):
                continue
            p = pvals.loc[task, inter]
            star = "*" if not pd.isna(p) and p < alpha else ""
            text = f"{v:+.3f}{star}" + ("" if pd.isna(p) else f"\np={p:.2g}")
            ax_delta.text(j, i, text, ha="center", va="center", fontsize=8)
    ax_delta.set_title(f"delta vs direct (* p < {alpha})")

    for ax in (ax_mean, ax_delta):
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("intermediate task")
        ax.set_ylabel("final task")
    if title:
        fig.suptitle(title)
    stem = Path(path).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in out:  # rendered in memory, then written atomically: never a half-written figure
        buf = io.BytesIO()
        fig.savefig(buf, format=p.suffix[1:], dpi=150)
        data = buf.getvalue()
        _atomic_write(p, lambda f, data=data: f.write(data))
    return out
