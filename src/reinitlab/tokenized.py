"""Tokenize a split once and cache it on disk, keyed by everything that changes the result.

The key covers the tokenizer (its full serialized definition, not just a name), the task,
the split, the max length, the source files and the training subset, so later jobs of a
sweep reuse the cache and a changed input never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from reinitlab.atomic import torch_save_atomic
from reinitlab.glue_io import Examples

CACHE_FORMAT = 1


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what maps text to ids. The fast tokenizer's serialized state also holds the
    truncation/padding settings of its last call, which change when it is used: left out."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        text = json.dumps(state, sort_keys=True)
    else:  # slow tokenizer: the vocabulary and class are what matter
        text = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_fingerprint(path: Path | None) -> str:
    """Size and mtime of a local file; the hub's split name for hub data."""
    if path is None:
        return "hub"
    st = os.stat(path)
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(**parts) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def tokenize(examples: Examples, tokenizer, max_length: int) -> dict:
    """Unpadded token ids per example (padding happens per batch in the collator)."""
    enc = tokenizer(
        examples.text_a,
        examples.text_b,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
    )
    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = {
        "offsets": torch.from_numpy(offsets),
        "input_ids": torch.tensor(np.concatenate(enc["input_ids"]), dtype=torch.int32),
        "labels": torch.tensor(examples.labels),
    }
    if "token_type_ids" in enc:
        out["token_type_ids"] = torch.tensor(
            np.concatenate(enc["token_type_ids"]), dtype=torch.int8
        )
    return out


def load_or_tokenize(
    cache_dir: Path | None, key: str, build_examples, tokenizer, max_length: int
) -> tuple[dict, bool]:
    """(tokenized split, whether it came from the cache). `build_examples` is only called on a miss."""
    path = None if cache_dir is None else Path(cache_dir) / "tokenized" / f"{key}.pt"
    if path is not None and path.is_file():
        try:
            return torch.load(path, weights_only=True), True
        except Exception:  # unreadable cache entry: rebuild it
            path.unlink(missing_ok=True)
    data = tokenize(build_examples(), tokenizer, max_length)
    if path is not None:
        torch_save_atomic(path, data)
    return data, False


class TokenizedDataset(torch.utils.data.Dataset):
    """Examples stored as one flat id tensor plus offsets (small on disk, fast to load)."""

    def __init__(self, data: dict):
        self.offsets = data["offsets"]
        self.input_ids = data["input_ids"]
        self.token_type_ids = data.get("token_type_ids")
        self.labels = data["labels"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        s, e = int(self.offsets[i]), int(self.offsets[i + 1])
        item = {"input_ids": self.input_ids[s:e], "labels": self.labels[i]}
        if self.token_type_ids is not None:
            item["token_type_ids"] = self.token_type_ids[s:e]
        return item


class PadCollator:
    """Dynamic padding to the longest sequence of the batch (or to a fixed length if asked)."""

    def __init__(self, pad_token_id: int, pad_to: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to = pad_to

    def __call__(self, items: list[dict]) -> dict:
        width = self.pad_to or max(len(x["input_ids"]) for x in items)
        n = len(items)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        has_types = "token_type_ids" in items[0]
        types = torch.zeros((n, width), dtype=torch.long) if has_types else None
        for row, x in enumerate(items):
            length = len(x["input_ids"])
            input_ids[row, :length] = x["input_ids"]
            attention[row, :length] = 1
            if has_types:
                types[row, :length] = x["token_type_ids"]
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": torch.stack([torch.as_tensor(x["labels"]) for x in items]),
        }
        if has_types:
            batch["token_type_ids"] = types
        return batch
