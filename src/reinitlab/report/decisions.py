"""The adaptive-seeds decisions in a report: read from each sweep's `decisions.json` with the
alpha and margins of its policy (`multirun.yaml`), and printed as a paper's decision table.
The rule itself is `reinitlab.decide`; here it is only read and shown."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reinitlab.decide.study import read_decisions, read_policy


def decisions_table(dirs: list[str | Path]) -> pd.DataFrame:
    """The adaptive-seeds decisions of the sweeps in `dirs` (decisions.csv): one row per
    variant against its cell's baseline, with the sweep it came from and the family-wise alpha,
    equivalence margin and family it was decided at (the sweep's policy; empty when not
    recorded)."""
    rows = []
    for d in dirs:
        policy = read_policy(Path(d))
        for dec in read_decisions(Path(d)) or []:
            rows.append(
                {
                    "sweep": str(d),
                    **dec.as_dict(),
                    "alpha": None if policy is None else policy.alpha,
                    "margin": None if policy is None else policy.margin_for(dec.task),
                    "family": None if policy is None else policy.family,
                }
            )
    return pd.DataFrame(rows)


def decisions_for_paper(decisions: pd.DataFrame) -> pd.DataFrame:
    """The decisions as a paper prints them: one row per comparison, its outcome (`undecided at
    budget` when no seed is left), the look and seeds it rests on, the paired mean difference
    with the rule's two-sided interval and, where a margin was set, the equivalence bounds
    that `equivalent` is decided on. Numbers as text at three decimals, the precision of the
    paper table, so the intervals read as intervals."""

    def num(x: float) -> str:
        return "--" if pd.isna(x) else f"{x:+.3f}"

    def pair(low: str, high: str) -> list[str]:
        return [
            "--" if pd.isna(lo) or pd.isna(hi) else f"[{lo:+.3f}, {hi:+.3f}]"
            for lo, hi in zip(decisions[low], decisions[high], strict=True)
        ]

    out = pd.DataFrame(
        {
            "Task": decisions["task"],
            "Variant": decisions["variant"],
            "Decision": decisions["decision"].where(
                ~decisions["at_budget"].astype(bool), "undecided at budget"
            ),
            "Look": decisions["stage"].map(lambda v: "--" if pd.isna(v) else str(int(v))),
            "Seeds": decisions["seeds_used"].astype(int),
            "Mean Δ": decisions["mean_diff"].map(num),
            "Interval": pair("low", "high"),
        }
    )
    if decisions.groupby("task")["cell"].nunique().max() > 1:  # a task run in several cells
        out.insert(1, "Cell", decisions["cell"])
    if "equiv_low" in decisions and decisions["equiv_low"].notna().any():
        out["Equivalence bounds"] = pair("equiv_low", "equiv_high")
    if "margin" in decisions and decisions["margin"].notna().any():
        out["Margin"] = decisions["margin"].map(lambda m: "--" if pd.isna(m) else f"{m:g}")
    return out


def decisions_caption(decisions: pd.DataFrame) -> str:
    """What the decision table shows and at which error rate, in a paper's words."""
    policies = decisions.get("alpha", pd.Series(dtype=float)).notna()
    said = decisions.loc[policies, ["alpha", "family"]].drop_duplicates()
    if len(said) == 1 and policies.all():
        alpha, family = said.iloc[0]
        where = "per task" if family == "task" else "over the whole study"
        rate = f"at most {alpha:g} chance of any wrong decision {where}"
    else:
        rate = "the family-wise alpha of each sweep's policy"
    return (
        "Decisions of the sequential seed rule (adaptive seeds): each variant against its "
        "task's baseline, paired by seed. Look = the look that decided it (-- undecided), "
        "Seeds = the seeds its numbers rest on; Mean Δ = paired mean difference variant - "
        "baseline; Interval = the rule's two-sided interval, adjusted for every look and "
        f"comparison ({rate}), better/worse when it excludes 0"
        + (
            "; Equivalence bounds = its one-sided (TOST) bounds, equivalent when they lie "
            "within ±Margin (the task's, in the metric's units)."
            if "margin" in decisions and decisions["margin"].notna().any()
            else "."
        )
    )
