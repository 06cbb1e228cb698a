"""Length-sorted pieces (`reinitlab.data.length_split`): the same loss and gradient as the whole
batch, with fewer padded positions, and the same training result end to end."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from reinitlab.data.length_split import split_batch, split_loss, split_plan
from tests.helpers import assert_same_end, compose_cfg, needs_glue, padded_batch, tiny_model
from tests.test_perf import Capture


def brute_force_cost(lengths, overhead):
    """Cheapest partition of the longest-first order into contiguous pieces, by enumeration."""
    srt = sorted(lengths, reverse=True)
    n = len(srt)
    best = float("inf")
    for k in range(n):
        for cuts in itertools.combinations(range(1, n), k):
            bounds = [0, *cuts, n]
            cost = sum((b - a) * srt[a] + overhead for a, b in itertools.pairwise(bounds))
            best = min(best, cost)
    return best


def plan_cost(lengths, pieces, overhead):
    return sum(len(p) * max(lengths[i] for i in p) + overhead for p in pieces)


def test_plan_by_hand():
    # whole: 4 x 10 + 5 = 45; two pieces: 2 x 10 + 5 + 2 x 2 + 5 = 34 -> split
    assert split_plan([2, 10, 2, 10], overhead_tokens=5) == [[1, 3], [0, 2]]
    # overhead 20: whole 60 < two pieces 64 -> one piece, longest first
    assert split_plan([2, 10, 2, 10], overhead_tokens=20) == [[1, 3, 0, 2]]
    # equal lengths never split; an empty batch has no pieces
    assert split_plan([7] * 32, overhead_tokens=0) == [list(range(32))]
    assert split_plan([], 5) == []
    with pytest.raises(ValueError, match="overhead_tokens must be >= 0, got -1"):
        split_plan([3], overhead_tokens=-1)


@pytest.mark.parametrize("overhead", [0, 16, 256])
def test_plan_is_optimal_and_uses_every_row_once(overhead):
    rng = random.Random(overhead)
    for _ in range(30):
        lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 9))]
        pieces = split_plan(lengths, overhead)
        assert sorted(i for p in pieces for i in p) == list(range(len(lengths)))
        assert plan_cost(lengths, pieces, overhead) == brute_force_cost(lengths, overhead)


def test_split_batch_trims_each_piece_to_its_longest_row():
    lengths = [5, 30, 6, 29, 4, 31]
    batch = padded_batch(lengths, 2)
    pieces = split_plan(lengths, overhead_tokens=8)
    assert pieces == [[5, 1, 3], [2, 0, 4]]
    parts = split_batch(batch, pieces)
    assert [p["input_ids"].shape for p in parts] == [(3, 31), (3, 6)]
    for piece, part in zip(pieces, parts, strict=True):
        width = part["input_ids"].shape[1]
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(part[key], batch[key][piece, :width])
            assert not batch[key][piece, width:].any()  # only padding was cut off
        assert torch.equal(part["labels"], batch["labels"][piece])


@pytest.mark.parametrize(
    ("family", "num_labels"),
    [("bert", 1), ("bert", 3), ("roberta", 2), ("electra", 1), ("distilbert", 2)],
)
def test_split_loss_and_gradient_equal_the_whole_batch(family, num_labels):
    lengths = [9, 64, 12, 3, 40, 7, 64, 11, 5, 33]
    model = tiny_model(family, num_labels=num_labels)
    batch = padded_batch(
        lengths,
        num_labels,
        pad_id=model.config.pad_token_id,
        token_types=family in ("bert", "electra"),
    )

    whole = model(**batch).loss
    whole.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    widths = []
    hook = model.base_model.embeddings.register_forward_hook(
        lambda mod, args, out: widths.append(out.shape[0] * out.shape[1])
    )
    split = split_loss(model, batch, overhead_tokens=16)
    hook.remove()
    split.backward()

    assert len(widths) >= 2  # it really split ...
    assert sum(widths) < 0.6 * len(lengths) * max(lengths)  # ... and computed less padding
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    assert max(g.abs().max().item() for g in grads.values()) > 0  # not a vacuous 0 == 0


NO_DROPOUT = (
    "model=tiny",
    "logger=none",
    "task=stsb",
    "data.max_train_samples=96",
    "trainer.max_epochs=2",
    "+model.config.hidden_dropout_prob=0.0",
    "+model.config.attention_probs_dropout_prob=0.0",
)


class CountTrainingForwards(Capture):
    """Capture, plus how many forward passes and padded positions training computed."""

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        self.calls, self.positions = 0, 0

        def count(mod, args, out):
            if mod.training:  # training steps; not validation, nor the packing check
                self.calls += 1
                self.positions += out.shape[0] * out.shape[1]

        self.hook = pl_module.model.base_model.embeddings.register_forward_hook(count)

    def on_train_end(self, trainer, pl_module):
        super().on_train_end(trainer, pl_module)
        self.hook.remove()


@needs_glue
@pytest.mark.parametrize("method", ["split", "pack"])
def test_training_without_padding_ends_where_padded_batches_end(tmp_path, method):
    from reinitlab.train import train

    out = {}
    for m in (method, "off"):
        cap = CountTrainingForwards()
        cfg = compose_cfg(tmp_path / m, *NO_DROPOUT, f"optim.remove_padding={m}")
        out[m] = (train(cfg, extra_callbacks=[cap]), cap)
    (rec, cap), (rec_off, cap_off) = out[method], out["off"]
    assert cap_off.calls == 6  # 6 steps, one forward each; pieces are extra forwards
    assert cap.calls > 6 if method == "split" else cap.calls == 6
    assert cap.positions < (0.8 if method == "split" else 0.6) * cap_off.positions
    assert rec["config"]["optim"]["remove_padding"] == method
    assert rec_off["config"]["optim"]["remove_padding"] == "off"
    for k, w in cap_off.initial.items():  # both started from the same weights
        assert torch.equal(w, cap.initial[k]), k
    # each tensor differs by < 1% of how far it moved, and every one moved
    assert_same_end(cap.weights, cap_off.weights, cap_off.initial)
    # the dev metrics too: validation batches are packed when training's are
    for key, value in rec["final"]["metrics"].items():
        assert value == pytest.approx(rec_off["final"]["metrics"][key], abs=1e-4), key
    assert rec["steps"] == rec_off["steps"] == 6
