"""The adaptive-seeds rule (`reinitlab.decide`): intervals against hand-computed t intervals,
pairing by seed, duplicates refused, and the family-wise error rates by simulation (a reduced
count here; >= 10,000 studies under `make test-science`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from reinitlab.decide.rule import BETTER, EQUIVALENT, WORSE, Policy, sequential
from reinitlab.decide.study import (
    DECISIONS_FILENAME,
    Comparison,
    Result,
    decide,
    finished,
    format_decisions,
    read_decisions,
    seeds_per_job,
)
from reinitlab.errors import ReinitlabError


def test_looks_and_levels():
    p = Policy(min_seeds=3, max_seeds=10, seeds_per_stage=2, alpha=0.05)
    assert p.looks() == [3, 5, 7, 9, 10]
    levels = p.look_levels(comparisons=2)
    # O'Brien-Fleming-leaning shape: strict early, most of alpha/2 kept for the later looks,
    # each below alpha/2 (looking more than once costs), above the Bonferroni split
    assert list(levels) == sorted(levels) and levels[0] < levels[-1] < 0.025
    assert levels[-1] > 0.025 / 5
    pocock = Policy(min_seeds=3, max_seeds=10, seeds_per_stage=2, shape=0.5).look_levels(2)
    assert max(pocock) == pytest.approx(min(pocock))
    # one look: the plain t interval at alpha / comparisons, no simulation
    one = Policy(min_seeds=4, max_seeds=4)
    assert one.looks() == [4] and one.look_levels(3) == (pytest.approx(0.05 / 3),)


def test_half_widths_are_the_looks_t_quantiles_over_root_n():
    """What a look can decide, in sds of the paired differences: the two-sided t quantile at
    the look's spent level over sqrt(n); one look is the plain Bonferroni t interval."""
    p = Policy(min_seeds=3, max_seeds=10)
    widths, levels = p.half_widths(6), p.look_levels(6)
    for w, n, level in zip(widths, p.looks(), levels, strict=True):
        assert w == pytest.approx(stats.t.isf(level / 2, n - 1) / math.sqrt(n))
    assert widths == sorted(widths, reverse=True) and widths[0] > 50 > 2 > widths[-1]
    one = Policy(min_seeds=4, max_seeds=4).half_widths(3)
    assert one == [pytest.approx(stats.t.isf(0.05 / 3 / 2, 3) / 2)]
    # the equivalence bounds' quantiles: one-sided, at the one-sided levels
    for t, n, level in zip(
        p.critical_values(6, sides=1), p.looks(), p.look_levels(6, 1), strict=True
    ):
        assert t == pytest.approx(stats.t.isf(level, n - 1))


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("min_seeds", 1, ">= 2"),
        ("max_seeds", 2, ">= min_seeds (3)"),
        ("seeds_per_stage", 0, ">= 1"),
        ("alpha", 1.5, "between 0 and 1"),
        ("margin", -0.1, "positive"),
        ("family", "cell", "task, study"),
    ],
)
def test_policy_refuses_bad_options_naming_them(option, value, allowed):
    with pytest.raises(ReinitlabError) as e:
        Policy(**{option: value})
    assert f"hydra.sweeper.adaptive.{option}={value!r}" in str(e.value)
    assert allowed in str(e.value)


def test_interval_is_the_exact_t_interval_at_the_spent_level():
    diffs = np.array([0.03, 0.01, 0.02, 0.05, 0.00])
    p = Policy(min_seeds=3, max_seeds=5, seeds_per_stage=2, alpha=0.05)  # looks 3, 5
    o = sequential(diffs, p, comparisons=2)
    first, last = p.look_levels(comparisons=2)
    # look 1 (seeds 0..2): mean 0.02, sd 0.01, t(1 - level/2, 2) * 0.01 / sqrt(3)
    half3 = stats.t.ppf(1 - first / 2, 2) * 0.01 / math.sqrt(3)
    assert 0.02 - half3 < 0  # undecided at look 1
    # look 2: all five seeds
    m, s = diffs.mean(), diffs.std(ddof=1)
    half5 = stats.t.ppf(1 - last / 2, 4) * s / math.sqrt(5)
    assert float(o.mean) == pytest.approx(m)
    assert float(o.low) == pytest.approx(m - half5)
    assert float(o.high) == pytest.approx(m + half5)
    assert int(o.n) == 5
    assert int(o.decision) == (BETTER if m - half5 > 0 else 0)


def test_decision_kinds_and_the_look_that_made_them():
    p = Policy(min_seeds=3, max_seeds=6, alpha=0.05, margin=0.05)  # looks 3, 4, 5, 6
    rows = np.array(
        [
            [-0.60, -0.61, -0.59, -0.62, -0.60, -0.60],  # far below: worse at look 1
            [0.001, -0.002, 0.0, 0.002, -0.001, 0.001],  # tiny spread: equivalent at look 1
            [0.02, -0.03, 0.04, -0.05, 0.03, -0.01],  # noisy around 0: undecided
        ]
    )
    o = sequential(rows, p, comparisons=3)
    assert o.decision.tolist() == [WORSE, EQUIVALENT, 0]
    assert o.look.tolist() == [1, 1, 0]
    assert o.n.tolist() == [3, 3, 6]
    # a decision is final: later seeds that would undo it are not looked at
    flipped = rows.copy()
    flipped[0, 3:] = 5.0
    assert sequential(flipped, p, 3).decision.tolist()[0] == WORSE


def results_for(cell, variant, values, first=0):
    return [Result(cell, variant, first + i, v) for i, v in enumerate(values)]


NOISE = (1e-3, -2e-3, 0.0)  # a far variant's seed-to-seed spread around -0.6


def test_study_pairs_by_seed_and_plans_the_next_stage():
    p = Policy(min_seeds=3, max_seeds=5, alpha=0.05)
    comps = [Comparison("stsb", "c1", "k=1"), Comparison("stsb", "c1", "k=6")]
    base = [0.1714, 0.1950, 0.2005, 0.1562, 0.1613]
    results = [
        *results_for("c1", None, base[:3], first=7),
        *results_for("c1", "k=1", [b - 0.6 + e for b, e in zip(base[:3], NOISE, strict=True)], 7),
        # k=6 has seeds 7, 8 and 10 but not 9: only the prefix 7, 8 pairs, no look yet
        Result("c1", "k=6", 7, 0.18),
        Result("c1", "k=6", 8, 0.19),
        Result("c1", "k=6", 10, 0.2),
    ]
    d = decide(comps, results, p, first_seed=7)
    assert [x.decision for x in d] == ["worse", "undecided"]
    assert d[0].mean_diff == pytest.approx(-0.6 - 1e-3 / 3)
    assert d[0].seeds_used == 3 and d[0].stage == 1
    assert d[1].seeds_used == 0 and d[1].mean_diff is None and not d[1].at_budget
    assert seeds_per_job(d) == {("c1", "k=1"): 3, ("c1", "k=6"): 3, ("c1", None): 3}
    assert not finished(d)
    table = format_decisions(d)
    assert "k=1      worse" in table and f"[{d[0].low:+.4f}, {d[0].high:+.4f}]" in table
    assert d[0].low < d[0].mean_diff < d[0].high < 0


def test_undecided_at_budget_keeps_its_interval():
    p = Policy(min_seeds=2, max_seeds=3, alpha=0.05)
    comps = [Comparison("rte", "c", "k=2")]
    results = results_for("c", None, [0.5, 0.6, 0.55]) + results_for("c", "k=2", [0.6, 0.5, 0.56])
    (d,) = decide(comps, results, p)
    assert d.decision == "undecided" and d.at_budget and d.seeds_used == 3
    assert d.low < 0 < d.high and d.seeds_needed == 3
    assert finished([d])


def test_identical_differences_decide_nothing():
    """Differences that are all the same -- exactly, or up to rounding, as quantised metrics
    give them -- have a zero-width interval: no decision is taken from it, whatever the margin;
    they end undecided at budget. One seed of spread, and the rule decides again."""
    p = Policy(min_seeds=2, max_seeds=4, alpha=0.05, margin=0.05)
    base = np.array([0.4366, 0.5634, 0.4225, 0.5493])
    flat = np.stack([base - base, (base + 0.07) - base, (base - 0.3) - base])
    assert np.ptp(flat[1]) > 0  # not exactly equal: rounding
    o = sequential(flat, p, comparisons=3)
    assert o.decision.tolist() == [0, 0, 0] and o.look.tolist() == [0, 0, 0]
    assert o.n.tolist() == [4, 4, 4]
    spread = flat.copy()
    spread[2, 1] -= 0.01  # k far below, with some spread: decided worse at the first look
    assert sequential(spread, p, comparisons=3).decision.tolist() == [0, 0, WORSE]


def test_each_task_has_its_own_equivalence_margin():
    """margin={cola: 0.02, stsb: 0.01}: the same small differences are equivalent on CoLA
    (equivalence bounds inside +-0.02) but not on STS-B (not inside +-0.01); a task the
    mapping leaves out gets no `equivalent` at all."""
    p = Policy(min_seeds=3, max_seeds=3, alpha=0.05, margin={"cola": 0.02, "stsb": 0.01})
    assert (p.margin_for("cola"), p.margin_for("stsb"), p.margin_for("rte")) == (0.02, 0.01, None)
    diffs = [0.009, -0.00675, 0.00225]  # mean 0.0015, sd 0.0079, n = 3
    comps = [Comparison(t, t, "k=6") for t in ("cola", "stsb", "rte")]
    results = []
    for t in ("cola", "stsb", "rte"):
        results += results_for(t, None, [0.5, 0.5, 0.5])
        results += results_for(t, "k=6", [0.5 + d for d in diffs])
    got = {d.task: d for d in decide(comps, results, p)}
    # per task family of one comparison, one look: the two-sided t interval at alpha and the
    # one-sided (TOST) bounds at alpha each
    se = np.std(diffs, ddof=1) / math.sqrt(3)
    half, equiv_half = stats.t.isf(0.05 / 2, 2) * se, stats.t.isf(0.05, 2) * se
    assert got["cola"].high == pytest.approx(np.mean(diffs) + half)
    assert got["cola"].equiv_high == pytest.approx(np.mean(diffs) + equiv_half)
    assert got["cola"].equiv_low == pytest.approx(np.mean(diffs) - equiv_half)
    assert 0.01 < equiv_half < 0.02 - np.mean(diffs)  # so the margins tell the tasks apart
    assert got["cola"].decision == "equivalent"
    assert got["stsb"].decision == "undecided" and got["rte"].decision == "undecided"
    assert got["rte"].equiv_low is None and got["rte"].equiv_high is None  # no margin, no TOST
    with pytest.raises(ReinitlabError, match=r"adaptive.margin=.*mapping task"):
        Policy(margin={"cola": -0.1})


def test_equivalent_uses_one_sided_bounds_not_the_two_sided_interval():
    """TOST (Schuirmann 1987): equivalence at level a is shown by one-sided bounds at a each,
    the (1 - 2a) interval. Here those bounds lie inside +-margin while the two-sided (1 - a)
    interval reaches past it: `equivalent` (the two-sided rule said `undecided`)."""
    p = Policy(min_seeds=4, max_seeds=6, seeds_per_stage=2, alpha=0.05, margin=0.02)  # 4, 6
    diffs = np.array([0.0168, -0.0056, 0.014, -0.0084, 0.0154, -0.0042])
    o = sequential(diffs, p, comparisons=2)
    assert int(o.decision) == EQUIVALENT and int(o.look) == 2 and int(o.n) == 6
    two = p.look_levels(2)
    one = p.look_levels(2, sides=1)
    m, se = diffs.mean(), diffs.std(ddof=1) / math.sqrt(6)
    # look 1 (4 seeds) decides nothing; look 2 (all six): the bounds by hand
    m4, se4 = diffs[:4].mean(), diffs[:4].std(ddof=1) / 2
    assert m4 + stats.t.isf(one[0], 3) * se4 >= 0.02
    hi_two = m + stats.t.isf(two[1] / 2, 5) * se
    lo_one, hi_one = m - stats.t.isf(one[1], 5) * se, m + stats.t.isf(one[1], 5) * se
    assert lo_one > -0.02 and hi_one < 0.02 <= hi_two  # TOST inside, two-sided not
    assert float(o.equiv_low) == pytest.approx(lo_one)
    assert float(o.equiv_high) == pytest.approx(hi_one)
    assert float(o.high) == pytest.approx(hi_two)  # the reported interval stays two-sided
    # the study's decision carries both, and the table shows the bounds it was decided on
    # (a family of two planned comparisons, as above; k=1 has no results yet)
    comps = [Comparison("stsb", "c", "k=6"), Comparison("stsb", "c", "k=1")]
    results = results_for("c", None, [0.5] * 6) + results_for("c", "k=6", 0.5 + diffs)
    d, _ = decide(comps, results, p)
    assert d.decision == "equivalent" and d.equiv_high == pytest.approx(hi_one, abs=1e-12)
    table = format_decisions([d])
    assert "equivalence bounds" in table.splitlines()[0]
    assert f"[{d.equiv_low:+.4f}, {d.equiv_high:+.4f}]" in table


def test_decisions_written_before_the_equivalence_bounds_are_still_read(tmp_path):
    comps = [Comparison("rte", "c", "k=2")]
    results = results_for("c", None, [0.5, 0.6, 0.55]) + results_for("c", "k=2", [0.6, 0.5, 0.56])
    (d,) = decide(comps, results, Policy(min_seeds=3, max_seeds=3, margin=0.5))
    assert d.equiv_low is not None
    (tmp_path / DECISIONS_FILENAME).write_text(json.dumps([d.as_dict()]))
    assert read_decisions(tmp_path) == [d]
    old = {k: v for k, v in d.as_dict().items() if k not in ("equiv_low", "equiv_high")}
    (tmp_path / DECISIONS_FILENAME).write_text(json.dumps([old]))
    (back,) = read_decisions(tmp_path)
    assert back.low == d.low and back.equiv_low is None and back.equiv_high is None
    assert "equivalence bounds" not in format_decisions([back])
    (tmp_path / DECISIONS_FILENAME).write_text(json.dumps([{**old, "extra": 1}]))
    assert read_decisions(tmp_path) is None


def test_one_sided_levels_are_their_own_calibration():
    """One look: the plain one-sided t level. Several looks: the one-sided bound crosses the
    true mean at some look with probability at most the level (fresh draws, not the
    calibration's), spending more than half the two-sided level per end (it is not halved)."""
    assert Policy(min_seeds=5, max_seeds=5).look_levels(4, sides=1) == (pytest.approx(0.0125),)
    p = Policy(min_seeds=3, max_seeds=10, alpha=0.05)
    one, two = p.look_levels(1, sides=1), p.look_levels(1)
    assert all(a > b / 2 for a, b in zip(one, two, strict=True))
    assert all(a < 0.05 for a in one)
    studies = 100_000
    x = np.random.default_rng(7).standard_normal((studies, 10))
    crossed = np.zeros(studies, dtype=bool)
    for j, n in enumerate(p.looks()):
        m, s = x[:, :n].mean(axis=1), x[:, :n].std(axis=1, ddof=1)
        crossed |= m + stats.t.isf(one[j], n - 1) * s / math.sqrt(n) < 0  # upper bound < mu
    rate, lo, hi = error_rate(crossed)
    assert lo <= 0.05 and rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / studies)
    assert hi >= 0.04  # the level is spent, not wasted as halving the two-sided one would
    with pytest.raises(ValueError, match="sides=3"):
        p.look_levels(1, sides=3)


def test_a_duplicate_result_is_refused_not_counted():
    comps = [Comparison("rte", "c", "k=2")]
    results = results_for("c", None, [0.5, 0.6, 0.55]) + [Result("c", None, 0, 0.5)]
    with pytest.raises(ReinitlabError, match="two results for baseline seed 0"):
        decide(comps, results, Policy())


def test_family_size_comes_from_the_plan_and_the_family_option():
    comps = [Comparison("rte", "c", "k=1"), Comparison("stsb", "d", "k=1")]
    diffs = [0.02, 0.021, 0.019, 0.02]
    results = [
        *results_for("c", None, [0.0] * 4),
        *results_for("c", "k=1", diffs),
    ]
    per_task = decide(comps, results, Policy(min_seeds=4, max_seeds=4))[0]
    study = decide(comps, results, Policy(min_seeds=4, max_seeds=4, family="study"))[0]
    # the study family spends alpha over two comparisons: a wider interval
    assert study.high - study.low > per_task.high - per_task.low
    half = stats.t.ppf(1 - 0.05 / 2 / 2, 3) * np.std(diffs, ddof=1) / 2
    assert study.high == pytest.approx(np.mean(diffs) + half)


# --- error rates by simulation -------------------------------------------------------------


def simulate(studies, true_diff, policy, sd=0.02, variants=3, seed=0):
    """Simulated studies: `variants` variants sharing one baseline (so their comparisons are
    correlated), seed noise `sd` per run (0.02: this project's MiniLM STS-B subset spread)."""
    rng = np.random.default_rng(seed)
    n = policy.max_seeds
    base = rng.normal(0.18, sd, size=(studies, 1, n))
    var = rng.normal(0.18 + true_diff, sd, size=(studies, variants, n))
    return sequential(var - base, policy, comparisons=variants)


def error_rate(wrong: np.ndarray) -> tuple[float, float, float]:
    """The rate of studies with any wrong decision and its 95% Clopper-Pearson interval."""
    k, n = int(wrong.sum()), wrong.size
    ci = stats.binomtest(k, n).proportion_ci(0.95)
    return k / n, ci.low, ci.high


def check_error_control(studies: int, proven: bool) -> dict[str, tuple[float, float, float]]:
    """`proven`: the whole Monte Carlo interval lies at or below alpha (needs many studies,
    the rule spends nearly all of alpha); else the rate is at most alpha and not above it
    beyond Monte Carlo noise."""
    policy = Policy(min_seeds=3, max_seeds=10, seeds_per_stage=1, alpha=0.05, margin=0.01)
    null = simulate(studies, 0.0, policy, seed=1)
    false_sign = np.isin(null.decision, [BETTER, WORSE]).any(axis=1)
    # a spread small against the margin, so that `equivalent` is a live answer: at a true
    # difference of 0 most comparisons end equivalent, at the margin almost none may
    sd = policy.margin / 4
    at_zero = simulate(studies, 0.0, policy, sd=sd, seed=4)
    assert (at_zero.decision == EQUIVALENT).mean() > 0.9
    at_margin = simulate(studies, policy.margin, policy, sd=sd, seed=2)
    at_minus = simulate(studies, -policy.margin, policy, sd=sd, seed=3)
    wrong_equiv = (at_margin.decision == EQUIVALENT).any(axis=1)
    wrong_equiv_minus = (at_minus.decision == EQUIVALENT).any(axis=1)
    rates = {
        "false better/worse (no difference)": error_rate(false_sign),
        "equivalent at +margin": error_rate(wrong_equiv),
        "equivalent at -margin": error_rate(wrong_equiv_minus),
    }
    for name, (rate, lo, hi) in rates.items():
        print(f"{name}: {rate:.4f} (95% MC interval {lo:.4f}-{hi:.4f}) over {studies} studies")
        assert rate <= policy.alpha and lo <= policy.alpha, name
        if proven:
            assert hi <= policy.alpha, name
    return rates


def test_family_wise_error_by_simulation_reduced():
    check_error_control(2_000, proven=False)


@pytest.mark.science
def test_family_wise_error_by_simulation_full():
    check_error_control(100_000, proven=True)
