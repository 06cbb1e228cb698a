"""Batch orders that cut padding without changing what an epoch is.

With dynamic padding every batch is as wide as its longest example, so a random batch of
short CoLA sentences with one long one is mostly padding. `LengthGroupedBatchSampler`
keeps the epoch a random permutation of the training set (every example exactly once)
but sorts by length inside large random chunks (`chunk_batches` batches each) before cutting
them into batches, then shuffles the batch order. Batches are as random in composition as
a chunk allows, and much narrower. The order depends only on (seed, epoch).

Dev sets are evaluated in length order (`length_sorted_indices`): GLUE metrics do not
depend on example order, so this only removes padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def example_lengths(offsets: torch.Tensor) -> np.ndarray:
    """Token counts per example from a flat-storage offsets tensor (n + 1 entries)."""
    off = np.asarray(offsets, dtype=np.int64)
    return off[1:] - off[:-1]


def length_grouped_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int = 0,
    chunk_batches: int = 50,
) -> list[list[int]]:
    """One epoch's batches: random chunks of `chunk_batches * batch_size` examples, each
    sorted by length (longest first) and cut into batches; then the batches are shuffled.

    Chunks are multiples of the batch size, so only the last chunk can give a short batch
    and the number of batches equals that of plain random batching: ceil(n / batch_size).
    """
    if batch_size < 1 or chunk_batches < 1:
        raise ValueError(
            f"batch_size and chunk_batches must be >= 1, got {batch_size}, {chunk_batches}"
        )
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([int(seed), int(epoch)])
    perm = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches: list[list[int]] = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """A `batch_sampler` yielding `length_grouped_batches` for successive epochs.

    Each iteration is the next epoch (Lightning iterates the train loader once per epoch and
    calls `set_epoch` only on samplers, not batch samplers), so epochs differ and the whole
    sequence is reproducible from the seed; `set_epoch(e)` jumps to epoch e.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int,
        chunk_batches: int = 50,
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.chunk_batches = int(chunk_batches)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Jump to epoch `epoch` (0-based): the next iteration yields its batches."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        batches = length_grouped_batches(
            self.lengths, self.batch_size, self.seed, self.epoch, self.chunk_batches
        )
        self.epoch += 1
        yield from batches


def length_sorted_indices(lengths: Sequence[int] | np.ndarray) -> list[int]:
    """Indices ordered longest first (stable), for evaluation batches with little padding."""
    return np.argsort(-np.asarray(lengths), kind="stable").tolist()


def pad_tokens(batches: Sequence[Sequence[int]], lengths: Sequence[int] | np.ndarray) -> int:
    """Padding positions dynamic padding adds: sum over batches of (max length - length)."""
    lengths = np.asarray(lengths)
    return int(sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches))
