"""Seed study (make test-science, about 22 minutes on 2 cores; not in CI): with dropout on, do
stacked members and their solo runs reach different dev metrics?

With dropout on, a member and its solo run share the data order, head and reinit draw but not
the dropout masks, so their metrics differ run by run. Five seeds per variant support a paired
t test that can *detect* a systematic difference; they cannot show equivalence (a TOST at a
margin small enough to matter would need many more seeds at this seed spread), so the claim
tested is "no difference detected", and the 90% interval of the mean paired difference printed
with the result says how large a difference these five seeds leave open (docs/science.md)."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from reinitlab.stack.run import train_stack
from reinitlab.train import train
from tests.helpers import compose_cfg, needs_glue
from tests.test_stack_minilm import MINILM, member

pytestmark = [pytest.mark.science, needs_glue]

SEEDS = range(5)
# STS-B, 1 epoch of its first 2,000 training examples (63 steps), dropout on (MiniLM's 0.1)
STSB = (*MINILM, "task=stsb", "data.max_train_samples=2000", "trainer.max_epochs=1")
VARIANTS = {"baseline": ("reinit=none",), "k5": ("reinit.k=5",)}


def test_with_dropout_on_no_difference_detected_between_members_and_solo_runs(tmp_path):
    """Paired by seed and variant, stacked - solo Pearson: the paired t test detects no
    difference (p > 0.01), the mean difference is small against the solo runs' spread over
    seeds, and the dropout masks really differ (no pair is identical)."""
    solo = {v: [] for v in VARIANTS}
    stacked = {v: [] for v in VARIANTS}
    for seed in SEEDS:
        for v, scheme in VARIANTS.items():
            cfg = compose_cfg(tmp_path / f"solo-{v}-{seed}", *STSB, *scheme, f"seed={seed}")
            solo[v].append(train(cfg)["final"]["metrics"]["val/primary"])
        members = [
            member(tmp_path / f"stack-{v}-{seed}", *STSB, *scheme, f"seed={seed}")
            for v, scheme in VARIANTS.items()
        ]
        for v, record in zip(VARIANTS, train_stack(members), strict=True):
            stacked[v].append(record["final"]["metrics"]["val/primary"])
    for v in VARIANTS:
        diffs = [a - b for a, b in zip(stacked[v], solo[v], strict=True)]
        spread = statistics.stdev(solo[v])
        test = stats.ttest_rel(stacked[v], solo[v])
        low, high = test.confidence_interval(confidence_level=0.90)
        print(
            f"[science] {v}: solo {[round(x, 4) for x in solo[v]]}, stacked "
            f"{[round(x, 4) for x in stacked[v]]}; mean stacked - solo {statistics.mean(diffs):+.4f}"
            f", 90% CI [{low:+.4f}, {high:+.4f}], paired t p = {test.pvalue:.3f}; "
            f"solo sd over seeds {spread:.4f}"
        )
        assert test.pvalue > 0.01, (v, solo[v], stacked[v], test.pvalue)
        assert abs(statistics.mean(diffs)) < 2 * spread, (v, solo[v], stacked[v])
        assert all(a != b for a, b in zip(stacked[v], solo[v], strict=True))  # dropout differs
