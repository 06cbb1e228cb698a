"""Batch orders that cut padding without changing what an epoch is.

With dynamic padding every batch is as wide as its longest example, so a random batch of
short CoLA sentences with one long one is mostly padding. `LengthGroupedBatchSampler`
keeps the epoch a random permutation of the training set (every example exactly once)
but sorts by length inside large random chunks (`chunk_batches` batches each) before cutting
them into batches, then shuffles the batch order. Batches are as random in composition as
a chunk allows, and much narrower. The order depends only on (seed, epoch).

Dev sets are evaluated in length order (`length_sorted_indices`): GLUE metrics do not
depend on example order, so this only removes padding.

Without length grouping, training batches come from `ResumableDataLoader`: a permutation per
epoch drawn from (seed, epoch) alone (`EpochSampler`), resumable mid-epoch, so a job resumed
from a checkpoint (`reinitlab.training.resume`) replays the interrupted epoch's order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


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


class EpochSampler(Sampler[int]):
    """A random permutation per epoch drawn from (seed, epoch) alone, so a resumed job
    reproduces the interrupted epoch's order; `skip` drops the first indices once (the batches
    already trained on before the interruption)."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = int(seed)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (0-based) whose permutation `__iter__` yields next."""
        self.epoch = int(epoch)

    def permutation(self) -> list[int]:
        """This epoch's order of all `num_samples` indices, a pure function of (seed, epoch)."""
        # (mod 2**63: an unseeded torch.initial_seed() is a 64-bit number and would overflow)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return iter(self.permutation()[skip:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader):
    """The training DataLoader, resumable mid-epoch through Lightning's `state_dict` /
    `load_state_dict` protocol: its state is (epoch, batches trained in it), the latter kept
    up to date by `PreemptionCheckpoint` (the loader itself runs ahead: Lightning prefetches).
    Lightning loads the state before it starts iterating, so the first epoch after a resume
    yields only the batches the interrupted one had left."""

    def __init__(self, dataset, *, seed: int, **kwargs):
        super().__init__(
            dataset,
            sampler=EpochSampler(len(dataset), seed),
            generator=torch.Generator().manual_seed(seed),  # base seed: not the global RNG
            **kwargs,
        )
        self.batches_trained = 0

    def state_dict(self) -> dict[str, int]:
        """The position to resume from: epoch and batches already trained in it."""
        return {"epoch": self.sampler.epoch, "batches_trained": self.batches_trained}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at that position: the sampler skips the already-trained batches' examples once."""
        self.sampler.set_epoch(state["epoch"])
        self.sampler.skip = int(state["batches_trained"]) * int(self.batch_size)
        self.batches_trained = int(state["batches_trained"])
