"""The intermediate-task transfer matrix: rows = final task, columns = the chain of intermediate
tasks fine-tuned on first ("none" = direct fine-tuning), cell = mean dev metric with CI, and the
paired delta vs direct fine-tuning (same final task, seed and training subset) with a paired
test and Holm's correction across the matrix.

`reinitlab report` writes `transfer_cells`' table (transfer.csv) and draws it
(`figures.transfer_heatmaps`); `transfer_matrix` / `format_transfer` pivot one matrix of it to
rows x columns for a notebook.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reinitlab.report import stats

# One matrix per model, training-set size, other factors and scheme variant (reinit + chains).
MATRIX = ["model", "size", "factors", "variant"]
PAIR = ["task", "seed", "seeds.subset"]
DIRECT = "none"


def chain_order(chains) -> list[str]:
    """The matrix's columns: `none` (direct fine-tuning) first, then the chains sorted."""
    return [DIRECT] + sorted(c for c in set(chains) if c != DIRECT)


def transfer_cells(runs: pd.DataFrame, n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (matrix, final task, chain): n, mean, CI; and vs direct: mean delta, test, p, Holm p.

    Only matrices whose runs use more than one chain are built. Baseline variants (reinit=none,
    k=L+1) are one variant here, so a matrix of plain fine-tuning runs is not split by how the
    baseline was spelled.
    """
    if runs.empty or "chain" not in runs or runs["chain"].nunique() < 2:
        return pd.DataFrame()
    runs = runs.assign(variant=runs["variant"].where(~runs["is_baseline"], "baseline"))
    rows = []
    for mkey, g in runs.groupby(MATRIX, dropna=False, sort=True):
        if g["chain"].nunique() < 2:
            continue
        direct = g[g["chain"] == "none"].groupby(PAIR, dropna=False)["primary"].mean()
        matrix_rows = []
        for (task, chain), c in g.groupby(["task", "chain"], sort=True):
            values = c["primary"].to_numpy(dtype=float)
            lo, hi, method = stats.mean_ci(values, n_resamples=n_resamples, seed=seed)
            row = {
                **dict(zip(MATRIX, mkey, strict=True)),
                "task": task,
                "chain": chain,
                "label": "baseline" if c["is_baseline"].all() else str(c["label"].iloc[0]),
                "n": len(values),
                "mean": float(values.mean()),
                "ci_low": lo,
                "ci_high": hi,
                "ci_method": method,
                "direct_mean": math.nan,
                "n_pairs": 0,
                "mean_delta": math.nan,
                "delta_ci_low": math.nan,
                "delta_ci_high": math.nan,
                "test": "",
                "p": math.nan,
            }
            task_direct = g[(g["chain"] == "none") & (g["task"] == task)]["primary"]
            if len(task_direct):
                row["direct_mean"] = float(task_direct.mean())
            if chain != "none":
                keys = pd.MultiIndex.from_frame(c[PAIR])
                base = direct.reindex(keys).to_numpy(dtype=float)
                ok = np.isfinite(base)
                run, base = values[ok], base[ok]
                d = run - base
                row["n_pairs"] = int(ok.sum())
                if len(d):
                    row["mean_delta"] = float(d.mean())
                    row["delta_ci_low"], row["delta_ci_high"], _ = stats.mean_ci(
                        d, n_resamples=n_resamples, seed=seed
                    )
                    row["test"], _, row["p"] = stats.paired_test(run, base)
            matrix_rows.append(row)
        frame = pd.DataFrame(matrix_rows)
        frame["p_holm"] = stats.holm(frame["p"].to_numpy())
        frame["better_than_direct"] = frame["mean"] > frame["direct_mean"]
        rows.append(frame)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def transfer_matrix(cells: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """One column of `transfer_cells` laid out as the matrix: rows = final task, columns = chain
    in the figures' order (`none` first). The report writes the long table and draws the
    matrix; this is for reading it as a table (notebooks, tests). `cells` must hold a single
    matrix (one model, size, factors and variant): select one first.
    """
    if len(cells[MATRIX].drop_duplicates()) > 1:
        raise ValueError(f"cells hold more than one matrix; select one by {MATRIX}")
    wide = cells.pivot(index="task", columns="chain", values=value)
    return wide.reindex(columns=chain_order(wide.columns))


def format_transfer(cells: pd.DataFrame, digits: int = 3, alpha: float = 0.05) -> pd.DataFrame:
    """`transfer_matrix` as text: `mean [ci_low, ci_high]`, `▲` when above direct fine-tuning,
    `*` when also Holm p < alpha (the figures' marks), `''` for a missing cell. For printing a
    matrix (notebooks, markdown), which the long table does not give.
    """

    def text(r) -> str:
        out = f"{r['mean']:.{digits}f}"
        if not math.isnan(r["ci_low"]):
            out += f" [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"
        if r["better_than_direct"]:
            out += " ▲" + ("*" if r["p_holm"] < alpha else "")
        return out

    return transfer_matrix(cells.assign(text=cells.apply(text, axis=1)), "text").fillna("")
