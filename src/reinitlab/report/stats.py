"""Aggregates, paired deltas vs the baseline, paired tests and Holm's correction.

Everything is computed from the runs table (collect.runs_frame) and is deterministic: the
bootstrap draws from a fixed seed, so the same sweep gives the same report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from reinitlab.decide.rule import DECISIONS, UNDECIDED
from reinitlab.errors import ReinitlabError

# A cell = one point of a figure: the same task, model, training-set size, other varied config
# factors and scheme variant. A family = the cells of one figure (Holm corrects within it).
# `chain` = the intermediate tasks fine-tuned on first ("none" = direct fine-tuning).
CELL = ["task", "model", "size", "factors", "chain", "scheme", "figure", "variant"]
FAMILY = ["task", "model", "size", "factors", "chain", "scheme", "figure"]
# A run's baseline shares task, model, training subset (size + subset seed), factors, chain
# and seed.
PAIR = ["task", "model", "size", "factors", "chain", "seed", "seeds.subset"]
WILCOXON_MIN_N = 6
CI_LEVEL = 0.95
# Below 3 runs a cell gets neither an interval nor a test: with 2 runs the percentile
# bootstrap "interval" is the range of the two values and a paired t test has one degree of
# freedom, so both would print certainty the data cannot give.
MIN_N = 3
# From this many runs the percentile bootstrap covers near its level; below it, it is too
# narrow (it cannot reach past the sample's range), and Student's t interval is used instead.
BOOTSTRAP_MIN_N = 20


def bootstrap_ci(
    values, level: float = CI_LEVEL, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy.stats.bootstrap, seeded => reproducible).

    NaN for fewer than two values (no spread to resample); a point for identical values.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = sps.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def t_interval(values, level: float = CI_LEVEL) -> tuple[float, float]:
    """Student's t interval of the mean (scipy.stats.t), valid for small n under normality."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan
    sem = float(sps.sem(x))
    if sem == 0.0:
        return float(x[0]), float(x[0])
    lo, hi = sps.t.interval(level, len(x) - 1, loc=float(x.mean()), scale=sem)
    return float(lo), float(hi)


def interval_method(n: int) -> str:
    """The interval used for a cell of `n` runs (named in the tables' `ci_method` column)."""
    if n < MIN_N:
        return f"none (n={n} < {MIN_N})"
    return "t" if n < BOOTSTRAP_MIN_N else "bootstrap"


def mean_ci(
    values, n_resamples: int = 10_000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float, str]:
    """(low, high, method): no interval below MIN_N runs, Student's t below BOOTSTRAP_MIN_N,
    else the seeded percentile bootstrap; the method says which, for the page and tables."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    method = interval_method(len(x))
    if method == "t":
        return (*t_interval(x, level), method)
    if method == "bootstrap":
        return (*bootstrap_ci(x, level, n_resamples=n_resamples, seed=seed), method)
    return math.nan, math.nan, method


def paired_test(run: np.ndarray, base: np.ndarray) -> tuple[str, float, float]:
    """(test name, statistic, p): Wilcoxon signed-rank for n >= 6 pairs, paired t for 3..5,
    none below 3.

    Below 6 pairs the exact Wilcoxon test cannot reach p < 0.05 (two-sided), so the paired t
    test is the only one that can say anything; with 2 pairs it has one degree of freedom and
    would call a lucky pair significant, so no test is run.
    """
    n = len(run)
    if n < MIN_N:
        return f"none (n={n} < {MIN_N})", math.nan, math.nan
    d = run - base
    if np.all(d == 0):
        return ("wilcoxon" if n >= WILCOXON_MIN_N else "paired t"), 0.0, 1.0
    if n >= WILCOXON_MIN_N:
        r = sps.wilcoxon(run, base)
        return "wilcoxon", float(r.statistic), float(r.pvalue)
    if np.all(d == d[0]):  # no variance: t is infinite, the data cannot be tested
        return "paired t", math.nan, math.nan
    r = sps.ttest_rel(run, base)
    return "paired t", float(r.statistic), float(r.pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values; NaN entries stay NaN and do not count."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out


def _cell_extras(g: pd.DataFrame) -> dict:
    first = g.iloc[0]
    extra = {"label": first["label"], "is_baseline": bool(g["is_baseline"].all())}
    for col in ("scheme.k", "head_layer", "head_index", "primary_metric", "num_layers"):
        if col in g:
            extra[col] = first[col]
    return extra


def aggregates(runs: pd.DataFrame, n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per cell: n, mean, std (ddof=1), 95% CI of the primary metric (`mean_ci`), the seeds."""
    rows = []
    for key, g in runs.groupby(CELL, sort=True, dropna=False):
        values = g["primary"].to_numpy(dtype=float)
        lo, hi, method = mean_ci(values, n_resamples=n_resamples, seed=seed)
        rows.append(
            {
                **dict(zip(CELL, key, strict=True)),
                **_cell_extras(g),
                "n": len(values),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                "ci_low": lo,
                "ci_high": hi,
                "ci_method": method,
                "seeds": ",".join(str(s) for s in sorted(g["seed"])),
            }
        )
    return pd.DataFrame(rows)


def paired_deltas(runs: pd.DataFrame) -> pd.DataFrame:
    """Each non-baseline run minus its baseline (same PAIR key); NaN delta when none exists.

    The baseline comes from the run's own sweep dir when that has one, else from the other
    dirs given. Several baseline runs with one key (e.g. reinit=none and k=L+1 both run) are
    averaged. A baseline of another seed is never used: the run is kept with `baseline_missing`.
    """
    baselines = runs[runs["is_baseline"]]
    others = runs[~runs["is_baseline"]].copy()
    others["baseline"] = np.nan
    others["baseline_runs"] = ""
    others["baseline_final"] = np.nan  # the final validation metric: what the seed rule compares
    for keys in ([*PAIR, "sweep_dir"], PAIR):
        todo = others["baseline"].isna()
        if not todo.any() or baselines.empty:
            break
        base = (
            baselines.groupby(keys, dropna=False)
            .agg(
                _b=("primary", "mean"),
                _bf=("final_primary", "mean"),
                _runs=("run_dir", lambda s: " ".join(map(str, s))),
            )
            .reset_index()
        )
        found = others.loc[todo, keys].merge(base, on=keys, how="left")
        found.index = others.index[todo]
        others.loc[todo, "baseline"] = found["_b"]
        others.loc[todo, "baseline_final"] = found["_bf"]
        others.loc[todo, "baseline_runs"] = found["_runs"].fillna("")
    others["baseline_missing"] = others["baseline"].isna()
    others["delta"] = others["primary"] - others["baseline"]
    cols = [*CELL, "label", "seed", "seeds.subset", "primary", "baseline", "delta"]
    extra = ["baseline_missing", "head_layer", "head_index", "scheme.k", "run_dir", "sweep_dir"]
    extra += ["sweep_cell", "final_primary", "baseline_final", "baseline_runs"]
    return others[cols + [c for c in extra if c in others]].reset_index(drop=True)


# The `test` and `ci_method` of a comparison the adaptive seed rule governs.
SEQUENTIAL_TEST = "sequential rule"


@dataclass(frozen=True)
class RuleLook:
    """What the adaptive seed rule saw of one comparison at its last look (decisions.json):
    the seeds it used, its interval there and what it decided (better, worse, equivalent or
    undecided)."""

    seeds: int
    low: float
    high: float
    decision: str = DECISIONS[UNDECIDED]


# The decisions that end a comparison under the rule (marked † in figures and tables).
DECIDED = tuple(d for i, d in enumerate(DECISIONS) if i != UNDECIDED)


def decided(cells: pd.DataFrame) -> pd.Series:
    """Which delta cells (`delta_cells`) the sequential seed rule decided: the ones marked †."""
    if "decision" not in cells:
        return pd.Series(False, index=cells.index)
    return cells["decision"].isin(DECIDED)


def _rule_pairs(
    cell: dict, runs: pd.DataFrame, sequential: Mapping[tuple[str, str, str], RuleLook] | None
) -> tuple[RuleLook | None, pd.DataFrame, int]:
    """The rule's look at `cell` (None where no rule decides it), the pairs of the cell's
    `runs` (its rows of `paired_deltas`) it is shown with (a rule's: its own sweep's first
    `seeds` seeds) and how many of the cell's pairs that leaves out; see `delta_cells`."""
    paired = runs[~runs["baseline_missing"]]
    sweeps = (
        set(zip(runs["sweep_dir"], runs["sweep_cell"], strict=True))
        if {"sweep_dir", "sweep_cell"} <= set(runs)
        else set()
    )
    looks = {
        sweep: look
        for sweep in sweeps
        if (look := (sequential or {}).get((*sweep, cell["variant"])))
    }
    if not looks:
        return None, paired, 0
    if len(looks) > 1:
        raise ReinitlabError(
            f"report: {cell['task']} {cell['variant']} ({cell['model']}) was decided by the "
            "adaptive seed rule more than once ("
            + "; ".join(f"sweep {d}, cell {c}" for d, c in sorted(looks))
            + "); each rule's interval covers its own seeds only: report those sweeps separately"
        )
    (((sweep, sweep_cell), ruled),) = looks.items()
    mine = (paired["sweep_dir"] == sweep) & (paired["sweep_cell"] == sweep_cell)
    own = paired[mine]
    if ruled.seeds:
        own = own.sort_values("seed").head(ruled.seeds)
    return ruled, own, int((~mine).sum())


def delta_cells(
    deltas: pd.DataFrame,
    n_resamples: int = 10_000,
    seed: int = 0,
    sequential: Mapping[tuple[str, str, str], RuleLook] | None = None,
) -> pd.DataFrame:
    """Per cell: paired n, mean/std delta, CI (`mean_ci`), the test used, p and Holm p per family.

    Cells the adaptive seed rule governs (`sequential`, below) are comparisons whose seeds it
    chose after looking at earlier results: a fixed-sample test on them would spend
    alpha again at every look and call differences significant that the rule, which spends it
    once over all looks, has not decided, and a fixed-sample interval would look as narrow as
    if the seeds had been fixed in advance. They get no p-value, leave the Holm family, and
    are shown as the rule saw them at its last look (`sequential[(sweep_dir, sweep_cell,
    variant)]`, the sweep and the cell the rule names): the pairs of its first `seeds` seeds
    there (a pair finished since joins at the next look) with the rule's interval, adjusted
    for every look and comparison (test and `ci_method` `SEQUENTIAL_TEST`), and its
    `decision`, in the values the rule compared (each run's final validation metric, also
    where the report reads best epochs).

    A rule decided one comparison of one sweep: a cell is the rule's only where its runs are
    that comparison's (another model's cell of the same task and variant stays a fixed-sample
    comparison), and pairs the cell has from elsewhere (another sweep) are left out of it
    (`n_left_out`), since the rule's interval covers its own seeds only. A cell two rules
    decided is refused: report those sweeps separately."""
    rows = []
    for key, g in deltas.groupby(CELL, sort=True, dropna=False):
        cell = dict(zip(CELL, key, strict=True))
        ruled, paired, n_left_out = _rule_pairs(cell, g, sequential)
        # a rule's comparison in the values it compared: each run's final validation metric
        # (the same as `primary` unless the report reads best epochs, --metric)
        run_col, base_col = (
            ("primary", "baseline") if ruled is None else ("final_primary", "baseline_final")
        )
        run = paired[run_col].to_numpy(dtype=float)
        base = paired[base_col].to_numpy(dtype=float)
        d = run - base
        if ruled is not None:
            test, statistic, p = SEQUENTIAL_TEST, math.nan, math.nan
            lo, hi, method = ruled.low, ruled.high, SEQUENTIAL_TEST
            if not ruled.seeds:  # the first stage is still running: its pairs, no interval yet
                lo, hi, method = math.nan, math.nan, "none (before the rule's first look)"
        else:
            test, statistic, p = paired_test(run, base)
            lo, hi, method = mean_ci(d, n_resamples=n_resamples, seed=seed)
        first = g.iloc[0]
        rows.append(
            {
                **cell,
                "label": first["label"],
                **{c: first[c] for c in ("head_layer", "head_index", "scheme.k") if c in g},
                "n_pairs": len(d),
                "n_unpaired": int(g["baseline_missing"].sum()),
                "mean_delta": float(d.mean()) if len(d) else math.nan,
                "std_delta": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
                "ci_low": lo,
                "ci_high": hi,
                "ci_method": method,
                "test": test,
                "statistic": statistic,
                "p": p,
                "decision": ruled.decision if ruled is not None else "",
                "n_left_out": n_left_out,
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = np.nan
    out["family_size"] = 0
    for _, idx in out.groupby(FAMILY, dropna=False).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p"].to_numpy())
        out.loc[idx, "family_size"] = int(np.isfinite(out.loc[idx, "p"]).sum())
    return out


def summary_table(deltas: pd.DataFrame, by: str) -> pd.DataFrame:
    """count, mean, std, min, quartiles, max of per-run deltas grouped by `by` (heads runs)."""
    d = deltas[~deltas["baseline_missing"] & deltas[by].notna()]
    if d.empty:
        return pd.DataFrame()
    keys = ["task", "model", "size", "factors", "chain", "figure", by]
    keys = [k for k in keys if k in d]
    table = d.groupby(keys, dropna=False)["delta"].describe().reset_index()
    table[by] = table[by].astype(int)
    name = "Layer {}" if by == "head_layer" else "H{}"
    table.insert(len(keys), "label", table[by].map(name.format))
    return table
