"""LightningDataModule for one GLUE task: read, subset, tokenize (cached), batch with dynamic padding."""

from __future__ import annotations

import sys
from pathlib import Path

from torch.utils.data import DataLoader

from reinitlab.data.batching import (
    LengthGroupedBatchSampler,
    example_lengths,
    length_sorted_indices,
)
from reinitlab.data.glue_io import load_split, resolve_glue_dir, subset_indices, task_dir
from reinitlab.data.module_base import TaskDataModule
from reinitlab.data.tasks import TaskSpec
from reinitlab.data.tokenized import (
    TokenizedDataset,
    cache_key,
    load_or_tokenize,
    source_fingerprint,
    tokenizer_fingerprint,
)


class GlueDataModule(TaskDataModule):
    """One GLUE task's train split (optionally a fixed subset) and dev sets, tokenized once and
    cached, batched with dynamic padding; the training order depends on the seeds only."""

    def __init__(
        self,
        task: TaskSpec,
        tokenizer,
        glue_dir: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        group_by_length: bool = False,
        **options,
    ):
        super().__init__(task, tokenizer, max_length=max_length, batch_size=batch_size, **options)
        self.glue_root = resolve_glue_dir(glue_dir)
        # Length-grouped training batches and length-sorted dev batches (see batching.py):
        # less padding, same epoch (every example once, a random order drawn from shuffle_seed).
        self.group_by_length = group_by_length
        self.train_set: TokenizedDataset | None = None
        self.val_sets: list[TokenizedDataset] = []

    # the `data` config group's options (read by from_config; any other key is refused)
    CONFIG_KEYS = ("glue_dir", "squad_dir", "max_length", "batch_size", "eval_batch_size",
                   "max_train_samples", "cache_dir", "pad_to_max_length", "num_workers",
                   "group_by_length")  # fmt: skip

    @staticmethod
    def config_options(data_cfg) -> dict:
        """`glue_dir` and `group_by_length` (the shared options: `TaskDataModule.from_config`)."""
        return {
            "glue_dir": data_cfg.glue_dir,
            "group_by_length": data_cfg.get("group_by_length", False),
        }

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
        """Length-grouped batches when asked for, else the shared resumable shuffled loader."""
        if self.group_by_length:
            return DataLoader(
                self.train_set,
                batch_sampler=LengthGroupedBatchSampler(
                    example_lengths(self.train_set.offsets), self.batch_size, self.shuffle_seed
                ),
                collate_fn=self.collate,
                num_workers=self.num_workers,
            )
        return super().train_dataloader()

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
