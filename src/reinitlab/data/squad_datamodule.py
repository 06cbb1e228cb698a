"""LightningDataModule for SQuAD: questions read once, split into overlapping windows
(features), cached, batched with dynamic padding.

Training batches hold features (a long context gives several per question) with their answer
token span; dev batches also carry each feature's index in its split (`labels`: QA has no class
label, the QA module pops it) so the module can put every feature's start/end logits back with
its question for post-processing.
"""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader

from reinitlab.data.glue_io import subset_indices
from reinitlab.data.module_base import TaskDataModule
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


class SquadDataModule(TaskDataModule):
    """SQuAD's train split (optionally a fixed subset of questions, stratified by
    answerable/unanswerable) and dev split as features; the training order depends on the
    seeds only."""

    collator = QACollator

    def __init__(
        self,
        task: TaskSpec,
        tokenizer,
        squad_dir: str | None = None,
        max_length: int = 384,
        batch_size: int = 12,
        **options,
    ):
        super().__init__(task, tokenizer, max_length=max_length, batch_size=batch_size, **options)
        self.squad_root = resolve_squad_dir(squad_dir)
        self.train_set: QAFeatureDataset | None = None
        self.val_sets: list[QAFeatureDataset] = []
        self.train_examples: list[QAExample] = []
        self.val_examples: list[QAExample] = []

    @staticmethod
    def config_options(data_cfg) -> dict:
        """`squad_dir` (`glue_dir` and `group_by_length` do not apply; the shared options:
        `TaskDataModule.from_config`)."""
        return {"squad_dir": data_cfg.get("squad_dir")}

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
