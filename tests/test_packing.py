"""Packed batches (`reinitlab.data.packing`): sequences end to end with a block-diagonal mask give
the same logits, loss and gradient as the padded batch, with almost no padding computed; a
model that can't be packed is refused with the reason, and training falls back to split."""

from __future__ import annotations

import logging
import math
import random

import pytest
import torch

from reinitlab.data.packing import Packer, PackingUnsupported, pack_batch, pack_plan
from reinitlab.errors import ReinitlabError
from reinitlab.reinit import install_head_masks
from tests.helpers import padded_batch, tiny_model


def test_plan_by_hand():
    # longest first into the first row with room; rows as wide as the longest (5)
    assert pack_plan([5, 3, 2, 4]) == [[0], [3], [1, 2]]
    assert pack_plan([2, 2, 2, 2, 2], width=4) == [[0, 1], [2, 3], [4]]
    assert pack_plan([7] * 4) == [[0], [1], [2], [3]]  # equal lengths: one per row
    assert pack_plan([]) == []
    with pytest.raises(ValueError, match="width 4 is narrower than the longest sequence \\(5\\)"):
        pack_plan([5, 1], width=4)


def test_plan_uses_every_row_once_and_few_rows():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 64) for _ in range(rng.randint(1, 40))]
        rows = pack_plan(lengths)
        width = max(lengths)
        assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in r) <= width for r in rows)
        # first-fit decreasing needs at most 11/9 of the optimum + 1 rows (Johnson's bound),
        # and the optimum is at least the total length over the width
        assert len(rows) <= 11 / 9 * math.ceil(sum(lengths) / width) + 1


def test_pack_batch_layout_by_hand():
    lengths = [5, 3, 2, 4]
    batch = padded_batch(lengths, num_labels=2)
    packed = pack_batch(batch, position_offset=0, pad_position=0, pad_id=0)
    x = packed.inputs
    # rows of 5: [seq 0], [seq 3 + unused slot], [seq 1, seq 2]
    assert x["input_ids"].shape == (3, 5) and packed.positions == 15
    assert torch.equal(x["input_ids"][0], batch["input_ids"][0, :5])
    assert torch.equal(x["input_ids"][1, :4], batch["input_ids"][3, :4])
    assert x["input_ids"][1, 4] == 0  # the unused slot holds the pad id
    assert torch.equal(x["input_ids"][2, :3], batch["input_ids"][1, :3])
    assert torch.equal(x["input_ids"][2, 3:], batch["input_ids"][2, :2])
    assert torch.equal(x["token_type_ids"][2, 3:], batch["token_type_ids"][2, :2])
    assert x["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    rows, cols = packed.first_token
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (2, 0), (2, 3), (1, 0)]
    assert torch.equal(x["labels"], batch["labels"])
    mask = x["attention_mask"][:, 0]
    assert mask.shape == (3, 5, 5) and mask.dtype == torch.bool
    assert mask[0].all()  # one sequence fills the row
    assert mask[2, :3, :3].all() and mask[2, 3:, 3:].all()  # each sequence sees itself ...
    assert not mask[2, :3, 3:].any() and not mask[2, 3:, :3].any()  # ... and nothing else
    assert mask[1, :4, :4].all() and not mask[1, :4, 4].any()
    assert mask[1, 4].tolist() == [False] * 4 + [True]  # the unused slot sees only itself


def test_roberta_positions_and_additive_mask():
    batch = padded_batch([3, 2], num_labels=2, pad_id=1, token_types=False)
    packed = pack_batch(
        batch, position_offset=2, pad_position=1, pad_id=1, mask_style="additive"
    ).inputs
    assert packed["position_ids"].tolist() == [[2, 3, 4], [2, 3, 1]]
    assert packed["input_ids"][1, 2] == 1
    mask = packed["attention_mask"][:, 0]
    assert mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, torch.finfo(torch.float32).min}
    assert mask[1, :2, :2].eq(0).all() and mask[1, 2, 2] == 0 and mask[1, 2, :2].lt(0).all()


def test_pack_batch_refuses_what_it_cannot_move():
    batch = padded_batch([3, 2], num_labels=2)
    with pytest.raises(ValueError, match="can't pack batch key 'special_tokens_mask'"):
        pack_batch({**batch, "special_tokens_mask": torch.zeros_like(batch["input_ids"])})
    left = dict(batch, attention_mask=batch["attention_mask"].flip(1))
    with pytest.raises(ValueError, match="right-padded rows"):
        pack_batch(left)
    empty = dict(batch, attention_mask=batch["attention_mask"] * torch.tensor([[1], [0]]))
    with pytest.raises(ValueError, match="at least one token per row"):
        pack_batch(empty)
    with pytest.raises(ValueError, match="mask_style must be 'bool' or 'additive', got 'x'"):
        pack_batch(batch, mask_style="x")


@pytest.mark.parametrize(
    ("family", "num_labels", "attention"),
    [
        ("bert", 1, "sdpa"),
        ("bert", 3, "eager"),
        ("roberta", 2, "sdpa"),
        ("roberta", 1, "eager"),
        ("electra", 1, "sdpa"),
        ("distilbert", 2, "sdpa"),
        ("mpnet", 2, "eager"),  # MPNet's attention is eager only (relative position bias)
        ("mpnet", 1, "eager"),
    ],
)
def test_packed_logits_loss_and_gradient_equal_the_padded_batch(family, num_labels, attention):
    lengths = [9, 64, 12, 3, 40, 7, 64, 11, 5, 33]
    model = tiny_model(family, num_labels=num_labels)
    model.config._attn_implementation = attention
    batch = padded_batch(
        lengths,
        num_labels,
        pad_id=model.config.pad_token_id,
        token_types=family in ("bert", "electra"),
    )
    padded = model(**batch)
    padded.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    packer = Packer.for_model(model)
    assert packer.pack(batch).positions < 0.45 * len(lengths) * max(lengths)  # 256 vs 640
    packed = packer(batch)
    packed.loss.backward()

    torch.testing.assert_close(packed.logits, padded.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(packed.loss, padded.loss, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    assert max(g.abs().max().item() for g in grads.values()) > 0  # not a vacuous 0 == 0
    # the hook that gathers first tokens is gone: the model runs unpacked as before
    assert not packer.encoder._forward_hooks
    torch.testing.assert_close(model(**batch).logits, padded.logits)


def test_head_masks_still_apply_when_packed():
    model = tiny_model("bert").eval()
    batch = padded_batch([6, 2, 3, 5], 2)
    unmasked = model(**batch).logits
    install_head_masks(model, [(0, 1), (1, 3)])
    masked = model(**batch).logits
    assert (masked - unmasked).abs().max() > 1e-4  # the mask changes the output ...
    torch.testing.assert_close(Packer.for_model(model)(batch).logits, masked)  # ... packed too


# GPT-2: a family packing does not know (its own dropout, the RNG unseeded)
GPT2 = dict(layers=1, heads=2, vocab_size=50, pad_token_id=0, dropout=None, seed=None)


def test_models_that_cannot_be_packed_are_refused_with_the_reason():
    with pytest.raises(PackingUnsupported, match="model type 'gpt2' \\(packing knows bert, elec"):
        Packer.for_model(tiny_model("gpt2", **GPT2))
    model = tiny_model("bert")
    model.config._attn_implementation = "flex_attention"
    with pytest.raises(PackingUnsupported, match="attention implementation 'flex_attention'"):
        Packer.for_model(model)


@pytest.mark.parametrize("family", ["roberta", "mpnet"])
@pytest.mark.parametrize("broken", ["positions", "mask"])
def test_the_check_catches_packing_that_the_model_does_not_honour(broken, family):
    model = tiny_model(family)
    packer = Packer.for_model(model)
    if broken == "positions":
        packer.position_offset = 0  # BERT's numbering on RoBERTa / MPNet
    else:  # every token attends to the whole row, as if the model ignored the 4-D mask
        pack = packer.pack

        def unmasked(batch, lengths=None):
            packed = pack(batch, lengths)
            packed.inputs["attention_mask"] = torch.ones_like(packed.inputs["attention_mask"])
            return packed

        packer.pack = unmasked
    with pytest.raises(
        PackingUnsupported, match="packed outputs differ from padded ones by .* of their spread"
    ):
        packer.check()


def test_mpnet_positions_start_after_its_padding_index():
    """MPNet numbers positions as RoBERTa does, after padding index 1 (its pad token): a
    sequence packed behind another restarts at 2, unused slots get 1."""
    model = tiny_model("mpnet", num_labels=3).eval()
    packer = Packer.for_model(model)
    assert (packer.position_offset, packer.pad_position, packer.pad_id) == (2, 1, 1)
    assert packer.mask_style == "additive"  # eager: the bias and the mask are added to scores
    batch = padded_batch([7, 3, 2, 5], 3, pad_id=1, token_types=False)
    assert packer.pack(batch).inputs["position_ids"].tolist() == [
        [2, 3, 4, 5, 6, 7, 8],
        [2, 3, 4, 5, 6, 2, 3],
        [2, 3, 4, 1, 1, 1, 1],
    ]
    torch.testing.assert_close(packer(batch).logits, model(**batch).logits)
    assert glue_classifier(tiny_model("mpnet")).padding_removal == "pack"
    # model=tiny-mpnet pads with MiniLM's id 0; positions still skip MPNet's index 1
    other = tiny_model("mpnet", pad_token_id=0)
    packer = Packer.for_model(other)  # its check never puts id 1 inside a sequence
    assert (packer.position_offset, packer.pad_position, packer.pad_id) == (2, 1, 0)


def test_the_check_leaves_modes_and_random_state_alone():
    model = tiny_model("bert").train()
    model.base_model.embeddings.eval()
    rng = torch.get_rng_state()
    Packer.for_model(model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and model.classifier.training
    assert not model.base_model.embeddings.training
    assert not model.base_model.embeddings.dropout.training


def glue_classifier(model, **kwargs):
    from reinitlab.data.tasks import load_task
    from reinitlab.training.module import GlueClassifier

    return GlueClassifier(model, load_task("cola"), **kwargs)


def test_a_bad_remove_padding_value_names_the_option_and_the_choices():
    with pytest.raises(ReinitlabError, match="optim.remove_padding: got 'packed'; allowed: pack"):
        glue_classifier(tiny_model("bert"), remove_padding="packed")


def test_training_falls_back_to_split_with_a_warning(caplog):
    module = glue_classifier(tiny_model("gpt2", **GPT2))
    with caplog.at_level(logging.WARNING, logger="reinitlab"):
        assert module.padding_removal == "split"
    assert "optim.remove_padding=pack can't be used (model type 'gpt2'" in caplog.text
    assert glue_classifier(tiny_model("bert")).padding_removal == "pack"
    assert glue_classifier(tiny_model("bert"), remove_padding="off").padding_removal == "off"
