"""A study's decisions from its results: every variant against its cell's baseline, paired by
seed, through the sequential rule (`reinitlab.decide.rule`).

A cell is everything a job is but its scheme and seed (task, model, data, recipe): the
variants of one cell share its baseline, and `variant(seed s) - baseline(seed s)` is one
sample of the comparison. Seeds follow a schedule fixed by the policy (`first, first+1, ...`);
look j uses exactly its first `looks[j]` seeds, so the decisions are a pure function of the
results and the policy, the same on every re-run, whatever order the jobs finished in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from reinitlab.decide.rule import DECISIONS, UNDECIDED, Policy, seeds_needed, sequential
from reinitlab.errors import ReinitlabError

DECISIONS_FILENAME = "decisions.json"  # in the sweep dir, rewritten after every stage


@dataclass(frozen=True)
class Comparison:
    """One variant of one cell against the cell's baseline."""

    task: str
    cell: str
    variant: str  # the scheme's label, e.g. `k=4`


@dataclass(frozen=True)
class Result:
    """One completed job's primary metric: `variant` is None for the cell's baseline."""

    cell: str
    variant: str | None
    seed: int
    value: float


@dataclass
class Decision:
    """What the study says about one comparison after the looks its results allow."""

    task: str
    variant: str
    decision: str  # better | worse | equivalent | undecided
    at_budget: bool  # undecided with max_seeds seeds: no further stage
    mean_diff: float | None  # paired mean difference (variant - baseline)
    low: float | None  # its two-sided interval at the deciding (or last) look: better/worse
    high: float | None
    seeds_used: int  # seeds in that interval (0 before the first look)
    stage: int | None  # the look that decided it
    seeds_needed: int  # seeds (a schedule prefix) the next stage needs for it
    cell: str
    # the same look's equivalence (TOST) bounds, each one-sided, narrower than low/high: an
    # `equivalent` is said when they lie within +-margin; None without a margin (and in
    # decisions.json files written before they were recorded)
    equiv_low: float | None = None
    equiv_high: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def schedule(policy: Policy, first_seed: int) -> list[int]:
    """The seeds in the order stages add them."""
    return list(range(first_seed, first_seed + policy.max_seeds))


def index_results(results: Iterable[Result]) -> dict[tuple[str, str | None, int], float]:
    """Results by (cell, variant, seed); two results of one job are refused, never averaged
    or counted twice (a duplicate is not a sample)."""
    out: dict[tuple[str, str | None, int], float] = {}
    for r in results:
        key = (r.cell, r.variant, r.seed)
        if key in out:
            who = "baseline" if r.variant is None else r.variant
            raise ReinitlabError(f"two results for {who} seed {r.seed} of cell {r.cell}")
        out[key] = float(r.value)
    return out


def paired_prefix(
    values: dict[tuple[str, str | None, int], float], comp: Comparison, seeds: list[int]
) -> np.ndarray:
    """The comparison's paired differences over the longest prefix of the schedule where both
    the variant and the baseline have a result."""
    diffs = []
    for s in seeds:
        v, b = values.get((comp.cell, comp.variant, s)), values.get((comp.cell, None, s))
        if v is None or b is None:
            break
        diffs.append(v - b)
    return np.asarray(diffs, dtype=float)


def family_sizes(comparisons: list[Comparison], family: str) -> dict[str, int]:
    """Comparisons per family: per task, or all of them under the name `study`."""
    sizes: dict[str, int] = {}
    for c in comparisons:
        name = c.task if family == "task" else "study"
        sizes[name] = sizes.get(name, 0) + 1
    return sizes


def decide(
    comparisons: list[Comparison], results: Iterable[Result], policy: Policy, first_seed: int = 0
) -> list[Decision]:
    """Every planned comparison's decision (in the order given). The family sizes come from
    the planned comparisons, not from those with results, so a look's level never depends on
    which jobs happen to have finished."""
    seeds = schedule(policy, first_seed)
    values = index_results(results)
    sizes = family_sizes(comparisons, policy.family)
    out = []
    for c in comparisons:
        m = sizes[c.task if policy.family == "task" else "study"]
        diffs = paired_prefix(values, c, seeds)
        o = sequential(diffs, replace(policy, margin=policy.margin_for(c.task)), m)
        code, n = int(o.decision), int(o.n)
        need = seeds_needed(code, n, policy) if n else policy.min_seeds
        decided = code != UNDECIDED

        def num(x: np.ndarray) -> float | None:
            return None if np.isnan(x) else float(x)

        out.append(
            Decision(
                task=c.task,
                variant=c.variant,
                decision=DECISIONS[code],
                at_budget=not decided and n >= policy.max_seeds,
                mean_diff=num(o.mean),
                low=num(o.low),
                high=num(o.high),
                seeds_used=n,
                stage=int(o.look) if decided else None,
                seeds_needed=need,
                cell=c.cell,
                equiv_low=num(o.equiv_low),
                equiv_high=num(o.equiv_high),
            )
        )
    return out


def seeds_per_job(decisions: list[Decision]) -> dict[tuple[str, str | None], int]:
    """How many schedule seeds each variant and each cell's baseline needs now: a variant its
    decision's, a baseline the most any of its cell's variants needs."""
    need: dict[tuple[str, str | None], int] = {}
    for d in decisions:
        need[(d.cell, d.variant)] = d.seeds_needed
        need[(d.cell, None)] = max(need.get((d.cell, None), 0), d.seeds_needed)
    return need


def finished(decisions: list[Decision]) -> bool:
    """Whether no comparison needs another stage."""
    return all(d.decision != "undecided" or d.at_budget for d in decisions)


def format_decisions(decisions: list[Decision]) -> str:
    """The decisions as a fixed-width table (the end of an adaptive sweep, its dry run,
    `reinitlab status`). `interval` is the two-sided one (better/worse); with a margin, the
    `equivalence bounds` column shows the one-sided (TOST) bounds that `equivalent` is
    decided on, so an `equivalent` whose two-sided interval reaches past the margin is
    explained."""
    show_equiv = any(d.equiv_low is not None for d in decisions)
    header = ["task", "variant", "decision", "diff", "interval", "seeds", "stage"]
    if show_equiv:
        header.insert(5, "equivalence bounds")
    rows = []
    for d in decisions:
        what = d.decision + (" at budget" if d.at_budget else "")
        diff = "" if d.mean_diff is None else f"{d.mean_diff:+.4f}"
        ci = "" if d.low is None else f"[{d.low:+.4f}, {d.high:+.4f}]"
        stage = "" if d.stage is None else str(d.stage)
        row = [d.task, d.variant, what, diff, ci, str(d.seeds_used), stage]
        if show_equiv:
            eq = "" if d.equiv_low is None else f"[{d.equiv_low:+.4f}, {d.equiv_high:+.4f}]"
            row.insert(5, eq)
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def read_policy(sweep_dir: Path) -> Policy | None:
    """The adaptive-seeds policy a sweep ran with, from its `multirun.yaml`
    (`hydra.sweeper.adaptive`), so a report can say the alpha and margins its decisions were
    made at; None when the sweep was not adaptive or the file does not say (or cannot be read)."""
    from omegaconf import OmegaConf

    try:
        sweeper = OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra.sweeper
        if sweeper.get("seeds") != "adaptive":
            return None
        return Policy.from_options(OmegaConf.to_container(sweeper.adaptive, resolve=True))
    except Exception:  # a missing, damaged or foreign file: the decisions stand without it
        return None


def read_decisions(sweep_dir: Path) -> list[Decision] | None:
    """The decisions an adaptive sweep wrote into `sweep_dir`, None when it has none (a fixed
    sweep) or the file is not a list of decisions (then nothing is shown rather than a part).
    A file written before the equivalence bounds were recorded is read without them."""
    path = Path(sweep_dir) / DECISIONS_FILENAME
    try:
        items = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    names = {f.name for f in fields(Decision)}
    required = {f.name for f in fields(Decision) if f.default is MISSING}
    if not isinstance(items, list) or not all(
        isinstance(d, dict) and required <= set(d) <= names for d in items
    ):
        return None
    return [Decision(**d) for d in items]
