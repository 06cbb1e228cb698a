"""LightningDataModule for SQuAD: questions read once, split into overlapping windows
(features), cached, batched with dynamic padding.

Training batches hold features (a long context gives several per question) with their answer
token span; dev batches also carry each feature's index in its split (`labels`: QA has no class
label, the QA module pops it) so the module can put every feature's start/end logits back with
its question for post-processing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from reinitlab.data.glue_io import subset_indices
from reinitlab.data.squad_features import QAFeatures, prepare_features
from reinitlab.data.squad_io import (
    QAExample,
    load_squad_split,
    resolve_squad_dir,
    split_file,
)
from reinitlab.data.tasks import TaskSpec
from reinitlab.data.tokenized import (
    PadCollator,
    cache_key,
    content_checksum,
    load_or_build,
    source_fingerprint,
    tokenizer_fingerprint,
)


class QAFeatureDataset(torch.utils.data.Dataset):
    """One split's features as model inputs + answer span + the feature's index."""

    def __init__(self, features: QAFeatures):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        f = self.features
        item = {
            "input_ids": torch.tensor(f.input_ids[i]),
            "start_positions": f.start_positions[i],
            "end_positions": f.end_positions[i],
            "labels": i,
        }
        if f.token_type_ids is not None:
            item["token_type_ids"] = torch.tensor(f.token_type_ids[i])
        return item


class QACollator(PadCollator):
    """GLUE's dynamic padding, plus the answer's start and end token per feature."""

    def __call__(self, items: list[dict]) -> dict:
        batch = super().__call__(items)
        for key in ("start_positions", "end_positions"):
            batch[key] = torch.tensor([x[key] for x in items], dtype=torch.long)
        return batch


class SquadDataModule(L.LightningDataModule):
    """SQuAD's train split (optionally a fixed subset of questions, stratified by
    answerable/unanswerable) and dev split as features; the training order depends on the
    seeds only."""

    def __init__(
        self,
        task: TaskSpec,
        tokenizer,
        squad_dir: str | None = None,
        max_length: int = 384,
        batch_size: int = 12,
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
        self.squad_root = resolve_squad_dir(squad_dir)
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_train_samples = max_train_samples
        self.subset_seed = subset_seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.collate = QACollator(
            tokenizer.pad_token_id, pad_to=max_length if pad_to_max_length else None
        )
        self.num_workers = num_workers
        self.shuffle_seed = shuffle_seed
        self.train_set: QAFeatureDataset | None = None
        self.val_sets: list[QAFeatureDataset] = []
        self.train_examples: list[QAExample] = []
        self.val_examples: list[QAExample] = []
        self.cache_hits: dict[str, bool] = {}

    @classmethod
    def from_config(cls, task: TaskSpec, tokenizer, data_cfg, seeds: dict, **overrides):
        """From the `data` config group (`squad_dir`; `glue_dir` and `group_by_length` do not
        apply) and the job's seeds."""
        kwargs = dict(
            squad_dir=data_cfg.get("squad_dir"),
            max_length=data_cfg.max_length,
            batch_size=data_cfg.batch_size,
            eval_batch_size=data_cfg.eval_batch_size,
            max_train_samples=data_cfg.max_train_samples,
            subset_seed=seeds["subset"],
            cache_dir=data_cfg.cache_dir,
            pad_to_max_length=data_cfg.pad_to_max_length,
            num_workers=data_cfg.num_workers,
            shuffle_seed=seeds["train"],
        )
        return cls(task, tokenizer, **{**kwargs, **overrides})

    def _examples(self, split: str, subset: int | None) -> list[QAExample]:
        examples = load_squad_split(self.task.qa.version, split, self.squad_root)
        if split == "train":
            idx = subset_indices(
                [e.is_impossible for e in examples], subset, self.subset_seed, stratify=True
            )
            if idx is not None:
                examples = [examples[i] for i in idx]
        return examples

    def _load(self, split: str, subset: int | None) -> tuple[list[QAExample], QAFeatures]:
        qa = self.task.qa
        source = None
        if self.squad_root is not None:
            source = self.squad_root / split_file(qa.version, split)
        key = cache_key(
            kind="squad_features",
            tokenizer=tokenizer_fingerprint(self.tokenizer),
            task=self.task.name,
            version=qa.version,
            split=split,
            max_length=self.max_length,
            doc_stride=qa.doc_stride,
            source=source_fingerprint(source) if source is not None and source.is_file() else "hub",
            subset=None if subset is None else [subset, self.subset_seed],
        )
        examples = self._examples(split, subset)  # read every time: post-processing needs them
        path = None if self.cache_dir is None else self.cache_dir / "squad" / f"{key}.pt"
        data, hit = load_or_build(
            path,
            key,
            lambda: dict(
                vars(prepare_features(self.tokenizer, examples, self.max_length, qa.doc_stride))
            ),  # fmt: skip
            checksum=content_checksum,
        )
        features = QAFeatures(**data)
        self.cache_hits[split] = hit
        return examples, features

    def setup(self, stage: str | None = None) -> None:
        """Read and tokenize (or load) both splits once."""
        if self.train_set is not None:
            return
        self.train_examples, train = self._load("train", self.max_train_samples)
        self.val_examples, dev = self._load("validation", None)
        self.train_set = QAFeatureDataset(train)
        self.val_sets = [QAFeatureDataset(dev)]
        cached = "cached" if all(self.cache_hits.values()) else "tokenized"
        print(
            f"[reinitlab] {self.task.name}: train {len(self.train_examples)} questions "
            f"({len(train)} features), validation {len(self.val_examples)} questions "
            f"({len(dev)} features) ({cached})",
            file=sys.stderr,
        )

    @property
    def num_train_examples(self) -> int:
        """Questions in the (subset) training split; 0 before `setup`."""
        return len(self.train_examples)

    @property
    def dev_sizes(self) -> dict[str, int]:
        """Dev questions (the result record's `dev_sizes`; the dev set holds their features)."""
        return {"validation": len(self.val_examples)}

    @property
    def val_features(self) -> QAFeatures:
        return self.val_sets[0].features

    def train_dataloader(self) -> DataLoader:
        from reinitlab.training.resume import ResumableDataLoader

        return ResumableDataLoader(
            self.train_set,
            seed=torch.initial_seed(),
            batch_size=self.batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(
                d,
                batch_size=self.eval_batch_size,
                shuffle=False,
                collate_fn=self.collate,
                num_workers=self.num_workers,
            )
            for d in self.val_sets
        ]
