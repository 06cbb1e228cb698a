"""The sequential rule behind adaptive seeds: repeated confidence intervals on paired differences.

A comparison is a variant against its cell's baseline; its samples are the paired differences
`variant(seed s) - baseline(seed s)`, one per seed. The study looks at them after each stage,
at the planned sample sizes `min_seeds, min_seeds + seeds_per_stage, ..., max_seeds` (the
looks), and stops a comparison at the first look whose interval settles it.

Why this rule. Re-running a fixed-n t-test after every stage inflates the error, so the looks
need a sequential rule. We use repeated confidence intervals (Jennison & Turnbull, *Group
Sequential Methods with Applications to Clinical Trials*, 2000, ch. 9) on a group-sequential
boundary: the family-wise `alpha` is split evenly over the family's `m` comparisons
(Bonferroni: valid whatever the correlation between comparisons, which share their cell's
baseline), and each comparison's `A = alpha / m` is spread over its looks by a boundary of
Wang & Tsiatis's shape, calibrated for the t statistics of exactly these looks
(`nominal_levels`). Each look has two intervals:

* the two-sided one `[L'_j, U'_j]`, calibrated so that the chance of any look's interval
  missing the true mean difference `delta` is at most `A`: `better` when `L'_j > 0`, `worse`
  when `U'_j < 0`;
* the equivalence (TOST) one `[L_j, U_j]`, made of one-sided bounds calibrated so that
  `P(some look has U_j < delta) <= A` (and the same for `L_j > delta`, by symmetry):
  `equivalent` when `-margin < L_j` and `U_j < margin`. This is Schuirmann's (1987) two
  one-sided tests: equivalence at level `A` needs one-sided bounds at `A` each (a `1 - 2A`
  interval), not the two-sided `1 - A` interval, which would be twice as conservative.

Why every comparison still errs with probability at most `A`: the one-sided boundary is
never wider than the two-sided one (`U_j <= U'_j`, `L_j >= L'_j`). If `delta >= margin`, a
wrong decision is `worse` (`U'_j < 0`) or `equivalent` (`U_j < margin`), and both imply
`U_j < delta` at some look; if `0 < delta < margin`, only `worse` is wrong, and it implies the
same; if `delta = 0`, a wrong `better` or `worse` needs the two-sided interval to miss; negative
`delta` is the mirror image (`L_j > delta`). Each case is one event of probability at most
`A`, so the family's chance of any wrong decision is at most `m * A = alpha`. The looks are
fixed by the policy before any data is seen, so the boundaries are too. The default shape
(0.25) sits between Pocock's and O'Brien & Fleming's: far variants still stop after 3-4
seeds, and the last looks, where near and null variants are decided, keep most of the error
budget (bench/bench_adaptive.py).

Libraries considered: AdaStop (`adastop`) is a permutation test between unpaired agents with
randomised permutations and no equivalence margin or intervals; `confseq`'s confidence
sequences need bounded observations and a C++ build; `deepsig`'s ASO is a one-shot test, not
a sequential one. Hence the t quantiles of `scipy.stats` here. The t interval assumes roughly
normal seed-to-seed differences (what fine-tuning's seed noise looks like at these sizes);
`tests/test_decide.py` checks the error rates by simulation.

Everything here is a pure function of arrays and the policy: no I/O, no randomness.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import stats

from reinitlab.errors import ReinitlabError

# Decision codes of the vectorised rule (`sequential`), and their names.
UNDECIDED, BETTER, WORSE, EQUIVALENT = 0, 1, 2, 3
DECISIONS = ("undecided", "better", "worse", "equivalent")
FAMILIES = ("task", "study")


@dataclass(frozen=True)
class Policy:
    """How seeds are added: the looks, the family-wise error and the equivalence margin."""

    min_seeds: int = 3  # seeds of every variant and baseline in stage 1
    max_seeds: int = 10  # a comparison still undecided here ends "undecided at budget"
    seeds_per_stage: int = 1  # seeds added to each undecided comparison per later stage
    alpha: float = 0.05  # family-wise error over all looks and comparisons of a family
    # |difference| below which variants are `equivalent` (the primary metric's units); a
    # mapping task -> margin gives each task its own (a task left out: no equivalence); None: never
    margin: float | Mapping[str, float] | None = None
    family: str = "task"  # error controlled per task, or over the whole study
    shape: float = 0.25  # the boundary's Wang-Tsiatis shape: 0.5 Pocock, 0 O'Brien-Fleming

    def __post_init__(self) -> None:
        def bad(option: str, given: object, allowed: str) -> ReinitlabError:
            return ReinitlabError(
                f"hydra.sweeper.adaptive.{option}={given!r} is not allowed: {allowed}"
            )

        if not isinstance(self.min_seeds, int) or self.min_seeds < 2:
            raise bad("min_seeds", self.min_seeds, "an integer >= 2 (an interval needs 2 seeds)")
        if not isinstance(self.max_seeds, int) or self.max_seeds < self.min_seeds:
            raise bad("max_seeds", self.max_seeds, f"an integer >= min_seeds ({self.min_seeds})")
        if not isinstance(self.seeds_per_stage, int) or self.seeds_per_stage < 1:
            raise bad("seeds_per_stage", self.seeds_per_stage, "an integer >= 1")
        if not 0 < float(self.alpha) < 1:
            raise bad("alpha", self.alpha, "a number between 0 and 1 (exclusive)")
        margins = self.margin.values() if isinstance(self.margin, Mapping) else [self.margin]
        for m in margins:
            if m is not None and not (isinstance(m, int | float) and m > 0):
                raise bad(
                    "margin",
                    self.margin,
                    "a positive number, a mapping task -> positive number (e.g. "
                    "{cola:0.02,stsb:0.01}), or null (no equivalence)",
                )
        if not 0 <= float(self.shape) <= 0.5:
            raise bad("shape", self.shape, "a number from 0 (O'Brien-Fleming) to 0.5 (Pocock)")
        if self.family not in FAMILIES:
            raise bad("family", self.family, f"one of {', '.join(FAMILIES)}")

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> Policy:
        """The policy from `hydra.sweeper.adaptive.*` as a mapping; an option it does not have
        is refused by name (each value is checked by the policy itself)."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ReinitlabError(
                f"hydra.sweeper.adaptive.{unknown[0]} is not an option of adaptive seeds; the "
                f"options are {', '.join(allowed)}"
            )
        return cls(**options)

    def margin_for(self, task: str) -> float | None:
        """The equivalence margin of `task`'s comparisons (None: no `equivalent` for it)."""
        if isinstance(self.margin, Mapping):
            m = self.margin.get(task)
            return None if m is None else float(m)
        return None if self.margin is None else float(self.margin)

    def looks(self) -> list[int]:
        """The sample sizes at which comparisons are decided, fixed before any data."""
        sizes = list(range(self.min_seeds, self.max_seeds, self.seeds_per_stage))
        return [*sizes, self.max_seeds]

    def look_levels(self, comparisons: int, sides: int = 2) -> tuple[float, ...]:
        """The nominal error of one look's bounds at each look, for a family of
        `comparisons`: each comparison gets `alpha / comparisons` over all its looks. `sides`
        2: the two-sided interval's (better/worse); 1: each one-sided bound's (equivalence)."""
        level = float(self.alpha) / max(comparisons, 1)
        return nominal_levels(tuple(self.looks()), level, float(self.shape), sides)

    def critical_values(self, comparisons: int, sides: int = 2) -> list[float]:
        """Per look, the t quantile its bound multiplies the standard error by, for a family
        of `comparisons` (`sides` as in `look_levels`): the one place the looks' levels become
        interval widths, for the rule and for what is printed about it."""
        levels = self.look_levels(comparisons, sides)
        return [
            float(stats.t.isf(level / sides, n - 1))
            for n, level in zip(self.looks(), levels, strict=True)
        ]

    def half_widths(self, comparisons: int) -> list[float]:
        """Per look, the two-sided interval's half-width in standard deviations of the paired
        differences (`t quantile / sqrt(n)`): a comparison is decided `better`/`worse` at a
        look only if its mean difference exceeds this many sds. Printed before a study starts,
        because the first looks of a large family decide almost nothing (6 comparisons, 8
        looks: 58 sds at 3 seeds, 9.8 at 4, 4.4 at 5) and a researcher choosing `min_seeds`
        should know it."""
        return [
            t / math.sqrt(n)
            for n, t in zip(self.looks(), self.critical_values(comparisons), strict=True)
        ]

    def as_dict(self) -> dict:
        return asdict(self)


CALIBRATION_DRAWS = 400_000  # simulated t processes behind a boundary (MC se 1.6 % of 0.02)
CALIBRATION_SEED = 20261206  # fixed: the boundary is part of the design, the same every run


@functools.lru_cache(maxsize=32)
def simulated_maxima(looks: tuple[int, ...], shape: float) -> tuple[np.ndarray, np.ndarray]:
    """Per simulated null path, `max_j |z_j| * w_j` (two-sided) and `max_j z_j * w_j`
    (one-sided, z_j signed), sorted: what `nominal_levels` takes its quantiles from. Kept
    apart from the level so that every level (family size) of one design reuses the draws."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    weights = (np.asarray(looks, dtype=float) / looks[-1]) ** (0.5 - shape)
    two, one = [], []
    for start in range(0, CALIBRATION_DRAWS, 50_000):
        x = rng.standard_normal((min(50_000, CALIBRATION_DRAWS - start), looks[-1]))
        total, total_sq = np.cumsum(x, axis=1), np.cumsum(x**2, axis=1)
        worst_two = np.full(x.shape[0], -np.inf)
        worst_one = np.full(x.shape[0], -np.inf)
        for n, w in zip(looks, weights, strict=True):
            m = total[:, n - 1] / n
            sd = np.sqrt(np.maximum(total_sq[:, n - 1] - n * m**2, 0.0) / (n - 1))
            t = m * np.sqrt(n) / sd
            worst_two = np.maximum(worst_two, stats.norm.isf(stats.t.sf(np.abs(t), n - 1)) * w)
            worst_one = np.maximum(worst_one, stats.norm.isf(stats.t.sf(t, n - 1)) * w)
        two.append(worst_two)
        one.append(worst_one)
    return np.sort(np.concatenate(two)), np.sort(np.concatenate(one))


@functools.lru_cache(maxsize=64)
def nominal_levels(
    looks: tuple[int, ...], level: float, shape: float, sides: int = 2
) -> tuple[float, ...]:
    """The nominal t level of each look, such that the chance of any look's bound missing the
    true mean is at most `level`: with `sides` 2, of the two-sided interval (the level is
    two-sided: each end gets half); with `sides` 1, of one one-sided bound (the upper bound
    below the mean at some look, or by symmetry the lower bound above it).

    The boundary has Wang & Tsiatis's shape: on the normal scale, look j's critical value is
    `C * (n_j / n_K) ** (shape - 1/2)` (shape 0.5: Pocock's, the same at every look; 0:
    O'Brien & Fleming's, strict early and close to the fixed-n test at the last look), turned
    into a t quantile through its p-value. Under normal differences the looks' t statistics
    `(mean_n - mu) / (sd_n / sqrt n)` have a joint law free of the mean and the spread (a
    pivot), so C is computed once by simulating that law: a path misses when
    `max_j z_j * (n_j / n_K) ** (1/2 - shape)` exceeds C, z_j the normal quantile of look j's
    one-sided t p-value, of `|t|` for two sides and of the signed t for one side (its own
    calibration: halving the two-sided level would only bound the one-sided crossing, not
    spend it). C is that maximum's upper quantile, taken at `level` less two Monte Carlo
    standard errors so that the error stays below `level` despite the simulation. Both use
    the same draws, so the one-sided C is never above the two-sided one. One look needs no
    simulation: the plain t interval (or bound) is exact."""
    if sides not in (1, 2):
        raise ValueError(f"sides={sides!r}: 1 (one-sided bounds) or 2 (two-sided interval)")
    if len(looks) == 1:
        return (level,)
    weights = (np.asarray(looks, dtype=float) / looks[-1]) ** (0.5 - shape)
    worst = simulated_maxima(looks, shape)[2 - sides]
    target = level - 2 * math.sqrt(level * (1 - level) / worst.size)
    c = float(np.quantile(worst, 1 - target, method="higher"))
    return tuple(float(sides * stats.norm.sf(c / w)) for w in weights)


@dataclass
class Outcome:
    """What the rule says about comparisons (arrays of the input's leading shape)."""

    decision: np.ndarray  # codes: UNDECIDED, BETTER, WORSE, EQUIVALENT
    look: np.ndarray  # 1-based look (stage) of the decision; 0 while undecided
    n: np.ndarray  # seeds the interval uses (the deciding look's, else the last look's)
    mean: np.ndarray  # paired mean difference at that look
    low: np.ndarray  # the look's two-sided interval (nan before the first look)
    high: np.ndarray
    # the look's equivalence (TOST) bounds, one-sided each (nan without a margin)
    equiv_low: np.ndarray
    equiv_high: np.ndarray


def sequential(diffs: np.ndarray, policy: Policy, comparisons: int) -> Outcome:
    """Apply the rule to paired differences `diffs[..., seed index]` (seeds in schedule
    order; the last axis holds the seeds available, a prefix of the schedule). Looks beyond
    the available seeds are not taken; a comparison decided at a look keeps that decision.
    `better`/`worse` come from the two-sided interval, `equivalent` from the one-sided
    (TOST) bounds; where both could be said, `better`/`worse` is. Differences that are all
    the same decide nothing (their interval has no width); they end undecided at budget."""
    diffs = np.asarray(diffs, dtype=float)
    shape, available = diffs.shape[:-1], diffs.shape[-1]
    decision = np.zeros(shape, dtype=int)
    look_of = np.zeros(shape, dtype=int)
    n_used = np.zeros(shape, dtype=int)
    mean, low, high, equiv_low, equiv_high = (np.full(shape, np.nan) for _ in range(5))
    two_sided = policy.critical_values(comparisons)
    margin = None if policy.margin is None else float(policy.margin)
    one_sided = None if margin is None else policy.critical_values(comparisons, sides=1)
    total = np.cumsum(diffs, axis=-1)
    total_sq = np.cumsum(diffs**2, axis=-1)
    for j, n in enumerate(policy.looks(), 1):
        if n > available:
            break
        m = total[..., n - 1] / n
        se = np.sqrt(np.maximum(total_sq[..., n - 1] - n * m**2, 0.0) / (n - 1) / n)
        half = two_sided[j - 1] * se
        lo, hi = m - half, m + half
        now = np.full(shape, UNDECIDED)
        eq_lo = eq_hi = np.full(shape, np.nan)
        if one_sided is not None:
            eq_half = one_sided[j - 1] * se
            eq_lo, eq_hi = m - eq_half, m + eq_half
            now = np.where((eq_lo > -margin) & (eq_hi < margin), EQUIVALENT, now)
        now = np.where(hi < 0, WORSE, np.where(lo > 0, BETTER, now))
        # identical differences (a metric quantised by a small dev set, two models that both
        # predict one class) have zero spread and a zero-width interval: that is not evidence
        # of certainty, so nothing is decided from them
        # (up to rounding: `a - b` of quantised metrics differs in the last bits)
        flat = np.ptp(diffs[..., :n], axis=-1) <= 1e-9 * np.maximum(1.0, np.abs(m))
        now = np.where(flat, UNDECIDED, now)
        open_ = decision == UNDECIDED
        decision = np.where(open_, now, decision)
        look_of = np.where(open_ & (now != UNDECIDED), j, look_of)
        n_used = np.where(open_, n, n_used)
        mean = np.where(open_, m, mean)
        low = np.where(open_, lo, low)
        high = np.where(open_, hi, high)
        equiv_low = np.where(open_, eq_lo, equiv_low)
        equiv_high = np.where(open_, eq_hi, equiv_high)
    return Outcome(decision, look_of, n_used, mean, low, high, equiv_low, equiv_high)


def seeds_needed(outcome_decision: int, n_used: int, policy: Policy) -> int:
    """How many seeds (a prefix of the schedule) a comparison needs for its next look: as many
    as it has when decided or at budget, else the next look's size."""
    if outcome_decision != UNDECIDED:
        return n_used
    return next((n for n in policy.looks() if n > n_used), policy.max_seeds)
