"""LightningDataModule for one GLUE task: read, subset, tokenize (cached), batch with dynamic padding."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from reinitlab.data.batching import (
    LengthGroupedBatchSampler,
    example_lengths,
    length_sorted_indices,
)
from reinitlab.data.glue_io import load_split, resolve_glue_dir, subset_indices, task_dir
from reinitlab.data.tasks import TaskSpec
from reinitlab.data.tokenized import (
    PadCollator,
    TokenizedDataset,
    cache_key,
    load_or_tokenize,
    source_fingerprint,
    tokenizer_fingerprint,
)


class GlueDataModule(L.LightningDataModule):
    """One GLUE task's train split (optionally a fixed subset) and dev sets, tokenized once and
    cached, batched with dynamic padding; the training order depends on the seeds only."""

    def __init__(
        self,
        task: TaskSpec,
        tokenizer,
        glue_dir: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        max_train_samples: int | None = None,
        subset_seed: int = 0,
        cache_dir: str | None = None,
        pad_to_max_length: bool = False,
        num_workers: int = 0,
        group_by_length: bool = False,
        shuffle_seed: int = 0,
    ):
        super().__init__()
        self.task = task
        self.tokenizer = tokenizer
        self.glue_root = resolve_glue_dir(glue_dir)
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_train_samples = max_train_samples
        self.subset_seed = subset_seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.collate = PadCollator(
            tokenizer.pad_token_id, pad_to=max_length if pad_to_max_length else None
        )
        self.num_workers = num_workers
        # Length-grouped training batches and length-sorted dev batches (see batching.py):
        # less padding, same epoch (every example once, a random order drawn from shuffle_seed).
        self.group_by_length = group_by_length
        self.shuffle_seed = shuffle_seed
        self.train_set: TokenizedDataset | None = None
        self.val_sets: list[TokenizedDataset] = []
        self.cache_hits: dict[str, bool] = {}

    # the `data` config group's options (read by from_config; any other key is refused)
    CONFIG_KEYS = ("glue_dir", "squad_dir", "max_length", "batch_size", "eval_batch_size",
                   "max_train_samples", "cache_dir", "pad_to_max_length", "num_workers",
                   "group_by_length")  # fmt: skip

    @classmethod
    def from_config(cls, task: TaskSpec, tokenizer, data_cfg, seeds: dict, **overrides):
        """From the `data` config group and the job's seeds (subset draw, shuffle order)."""
        kwargs = dict(
            glue_dir=data_cfg.glue_dir,
            max_length=data_cfg.max_length,
            batch_size=data_cfg.batch_size,
            eval_batch_size=data_cfg.eval_batch_size,
            max_train_samples=data_cfg.max_train_samples,
            subset_seed=seeds["subset"],
            cache_dir=data_cfg.cache_dir,
            pad_to_max_length=data_cfg.pad_to_max_length,
            num_workers=data_cfg.num_workers,
            group_by_length=data_cfg.get("group_by_length", False),
            shuffle_seed=seeds["train"],
        )
        return cls(task, tokenizer, **{**kwargs, **overrides})

    def _source_file(self, split: str) -> Path | None:
        if self.glue_root is None:
            return None
        tsv = (
            self.task.train_tsv
            if split == "train"
            else next(v.tsv for v in self.task.validation if v.name == split)
        )
        path = task_dir(self.task, self.glue_root) / tsv
        return path if path.is_file() else None  # missing file: load_split reports it

    def _load(self, split: str, subset: int | None) -> TokenizedDataset:
        source = self._source_file(split)
        key = cache_key(
            tokenizer=tokenizer_fingerprint(self.tokenizer),
            task=self.task.name,
            split=split,
            max_length=self.max_length,
            source=source_fingerprint(source) if self.glue_root is not None else "hub",
            subset=None if subset is None else [subset, self.subset_seed],
        )

        def build():
            examples = load_split(self.task, split, self.glue_root)
            if split == "train":
                idx = subset_indices(
                    examples.labels, subset, self.subset_seed, stratify=not self.task.is_regression
                )
                if idx is not None:
                    examples = examples.select(idx)
            return examples

        data, hit = load_or_tokenize(self.cache_dir, key, build, self.tokenizer, self.max_length)
        self.cache_hits[split] = hit
        return TokenizedDataset(data)

    def setup(self, stage: str | None = None) -> None:
        """Load (or tokenize) every split once; later calls, for any stage, reuse them."""
        if self.train_set is not None:
            return
        self.train_set = self._load("train", self.max_train_samples)
        self.val_sets = [self._load(v.name, None) for v in self.task.validation]
        sizes = ", ".join(
            f"{v.name} {len(d)}" for v, d in zip(self.task.validation, self.val_sets, strict=False)
        )
        cached = "cached" if all(self.cache_hits.values()) else "tokenized"
        print(
            f"[reinitlab] {self.task.name}: train {len(self.train_set)}, {sizes} ({cached})",
            file=sys.stderr,
        )

    @property
    def num_train_examples(self) -> int:
        """Examples in the (subset) training split; 0 before `setup`."""
        return 0 if self.train_set is None else len(self.train_set)

    def train_dataloader(self) -> DataLoader:
        """Length-grouped batches when asked for, else a shuffled loader resumable mid-epoch, its
        order a function of the training seed and the epoch."""
        if self.group_by_length:
            return DataLoader(
                self.train_set,
                batch_sampler=LengthGroupedBatchSampler(
                    example_lengths(self.train_set.offsets), self.batch_size, self.shuffle_seed
                ),
                collate_fn=self.collate,
                num_workers=self.num_workers,
            )
        from reinitlab.training.resume import ResumableDataLoader

        # The shuffle is a function of (training seed, epoch) only, so a job resumed from a
        # mid-epoch checkpoint replays the same order (seed_everything set initial_seed()).
        return ResumableDataLoader(
            self.train_set,
            seed=torch.initial_seed(),
            batch_size=self.batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per dev set, in the task's order (primary first); longest first when grouping
        by length, to pad less."""
        return [
            DataLoader(
                d,
                batch_size=self.eval_batch_size,
                sampler=length_sorted_indices(example_lengths(d.offsets))
                if self.group_by_length
                else None,
                shuffle=False,
                collate_fn=self.collate,
                num_workers=self.num_workers,
            )
            for d in self.val_sets
        ]
