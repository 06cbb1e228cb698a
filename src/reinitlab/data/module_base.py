"""What the GLUE and SQuAD data modules share: the `data` options every task reads, the job's
seeds, and the training loader resumable mid-epoch.

One place for the option plumbing, so a new `data` option (or a change to how the seeds
reach the loaders) cannot be wired into one task family and forgotten in the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from reinitlab.data.batching import ResumableDataLoader
from reinitlab.data.tasks import TaskSpec
from reinitlab.data.tokenized import PadCollator


class TaskDataModule(L.LightningDataModule):
    """A task's data module: the shared options as attributes, `collate` built from
    `collator` (dynamic padding, or padding to `max_length`), and `from_config`, which reads
    the shared `data` options plus the subclass's own (`config_options`)."""

    collator: type[PadCollator] = PadCollator

    def __init__(
        self,
        task: TaskSpec,
        tokenizer,
        *,
        max_length: int,
        batch_size: int,
        eval_batch_size: int = 128,
        max_train_samples: int | None = None,
        subset_seed: int = 0,
        cache_dir: str | None = None,
        pad_to_max_length: bool = False,
        num_workers: int = 0,
        shuffle_seed: int = 0,
    ):
        super().__init__()
        self.task = task
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_train_samples = max_train_samples
        self.subset_seed = subset_seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.collate = self.collator(
            tokenizer.pad_token_id, pad_to=max_length if pad_to_max_length else None
        )
        self.num_workers = num_workers
        self.shuffle_seed = shuffle_seed
        self.cache_hits: dict[str, bool] = {}

    @staticmethod
    def config_options(data_cfg) -> dict[str, Any]:
        """The subclass's own options from the `data` config group (its data directory, ...)."""
        return {}

    @classmethod
    def from_config(cls, task: TaskSpec, tokenizer, data_cfg, seeds: dict, **overrides):
        """From the `data` config group and the job's seeds (subset draw, shuffle order)."""
        kwargs = dict(
            max_length=data_cfg.max_length,
            batch_size=data_cfg.batch_size,
            eval_batch_size=data_cfg.eval_batch_size,
            max_train_samples=data_cfg.max_train_samples,
            subset_seed=seeds["subset"],
            cache_dir=data_cfg.cache_dir,
            pad_to_max_length=data_cfg.pad_to_max_length,
            num_workers=data_cfg.num_workers,
            shuffle_seed=seeds["train"],
            **cls.config_options(data_cfg),
        )
        return cls(task, tokenizer, **{**kwargs, **overrides})

    def train_dataloader(self) -> DataLoader:
        """A shuffled loader resumable mid-epoch, its order a function of the training seed and
        the epoch: a job resumed from a mid-epoch checkpoint replays the same order
        (seed_everything set initial_seed())."""
        return ResumableDataLoader(
            self.train_set,
            seed=torch.initial_seed(),
            batch_size=self.batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
