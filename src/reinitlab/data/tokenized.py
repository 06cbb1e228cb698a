"""Tokenize a split once and cache it on disk, keyed by everything that changes the result.

The key covers the tokenizer (its full serialized definition, not just a name), the task,
the split, the max length, the source files and the training subset, so later jobs of a
sweep reuse the cache and a changed input never reuses a stale one.

A file name alone does not prove what a file holds: a file copied or renamed over another
(the dev split where the train split belongs), edited in place, or damaged on disk would
otherwise be trusted because it loads. So each file also stores its identity (the parts the
key hashes) and a checksum of its arrays, and a load checks both. A file that fails either
check, or does not load at all, is reported with a warning and rebuilt from the source, never
used and never fatal (a damaged cache must not break every later job until deleted by hand).

File layout (format 2): `{"format": 2, "identity": {parts}, "checksum": sha256 hex,
"data": {"offsets", "input_ids", "labels"[, "token_type_ids"]}}`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reinitlab.atomic import torch_save_atomic
from reinitlab.data.glue_io import Examples

# 2: the file stores its identity and an array checksum (format 1 stored the bare arrays).
# The format is part of the key, so format-1 files are never looked up again.
CACHE_FORMAT = 2

_ARRAYS = ("offsets", "input_ids", "labels")  # always present; token_type_ids is optional


class TokenizedCacheWarning(UserWarning):
    """A cached tokenized split failed its identity/checksum check or did not load; rebuilt."""


class CacheKey(str):
    """The cache key (a hash, used as the file name) that also carries the parts it hashes.

    A `str` so callers keep passing it around as before; `load_or_tokenize` reads `.parts` to
    know which identity the file under this name must hold."""

    parts: dict[str, Any]

    def __new__(cls, digest: str, parts: dict[str, Any]) -> CacheKey:
        obj = super().__new__(cls, digest)
        obj.parts = parts
        return obj


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


def _identity(parts: dict[str, Any]) -> dict[str, Any]:
    """The parts as JSON sees them (tuples -> lists, paths -> str): what is stored in the file
    and compared on load, so an identity read back equals the one computed for a lookup."""
    return json.loads(json.dumps(parts, sort_keys=True, default=str))


def cache_key(**parts) -> CacheKey:
    """The cache key (24 hex digits) of one tokenized split, with the identity stored beside it
    and compared on load; the cache format is part of the hash."""
    blob = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return CacheKey(hashlib.sha256(blob.encode()).hexdigest()[:24], _identity(parts))


def arrays_checksum(data: dict[str, torch.Tensor]) -> str:
    """sha256 over name, dtype, shape and bytes of every array, in sorted name order.

    Cost: one pass of sha256 over the arrays (~1 GB/s; a few MB for most GLUE splits, ~0.1 s
    for MNLI's train split), small next to loading the file and far below tokenizing."""
    h = hashlib.sha256()
    for name in sorted(data):
        t = data[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


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


def _expected_identity(key: str) -> dict[str, Any]:
    """The identity a file under `key` must hold: the parts of a `CacheKey`; for a plain-str key
    (parts unknown) the key itself, which still tells one split's file from another's."""
    parts = getattr(key, "parts", None)
    return parts if parts is not None else {"key": str(key)}


def _identity_problem(expected: dict[str, Any], found: Any) -> str | None:
    """What differs between the identity this lookup expects and the one the file holds."""
    if not isinstance(found, dict):
        return f"identity differs (expected a dict, found {type(found).__name__})"
    if found == expected:
        return None
    diffs = [
        f"{k}: expected {expected.get(k, '<missing>')}, found {found.get(k, '<missing>')}"
        for k in sorted(set(expected) | set(found))
        if expected.get(k, object()) != found.get(k, object())
    ]
    return f"identity differs ({'; '.join(diffs)})"


def _check_arrays(data: Any) -> str | None:
    """Shape sanity of a split's arrays (what TokenizedDataset indexes by)."""
    if not isinstance(data, dict) or not all(k in data for k in _ARRAYS):
        return "unreadable: arrays missing"
    if not all(isinstance(v, torch.Tensor) for v in data.values()):
        return "unreadable: a stored array is not a tensor"
    offsets, ids, labels = data["offsets"], data["input_ids"], data["labels"]
    types = data.get("token_type_ids")
    if (
        offsets.ndim != 1
        or len(offsets) != len(labels) + 1
        or int(offsets[0]) != 0
        or int(offsets[-1]) != len(ids)
        or bool((offsets[1:] < offsets[:-1]).any())
        or (types is not None and len(types) != len(ids))
    ):
        return "inconsistent arrays (offsets, ids and labels do not fit together)"
    return None


def content_checksum(data: Any) -> str:
    """sha256 of JSON-able content (lists, numbers, strings, None): the checksum of cached
    data that is not a dict of tensors (SQuAD's features)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _read_cached(
    path: Path, expected: dict[str, Any], checksum: Callable[[Any], str], check: Callable
) -> tuple[Any, str]:
    """(the cached data, "") if the file is intact and is what this lookup asked for;
    (None, what is wrong) otherwise. Never raises: a damaged file must cost a rebuild, not
    the job."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, bit-flipped, not a torch file, odd shapes, ...
        return None, f"unreadable: {type(e).__name__}: {e}".splitlines()[0][:300]
    if not isinstance(blob, dict):
        return None, f"unreadable: not a dict ({type(blob).__name__})"
    if blob.get("format") != CACHE_FORMAT:
        return None, f"unreadable: format version {blob.get('format')!r}, expected {CACHE_FORMAT}"
    problem = _identity_problem(expected, blob.get("identity"))
    if problem:
        return None, problem
    data = blob.get("data")
    try:
        problem = check(data)
        if not problem and checksum(data) != blob.get("checksum"):
            problem = "checksum mismatch"
    except Exception as e:  # odd content that the check or the checksum cannot read
        problem = f"unreadable: {type(e).__name__}: {e}".splitlines()[0][:300]
    return (None, problem) if problem else (data, "")


def load_or_build(
    path: Path | None,
    key: str,
    build: Callable[[], Any],
    checksum: Callable[[Any], str] = arrays_checksum,
    check: Callable[[Any], str | None] = lambda data: None,
) -> tuple[Any, bool]:
    """(data, whether it came from the cache): the one checked cache of tokenized data.

    A cached file is used only if it holds the identity `key` was made from (`key.parts`; the
    key itself for a plain-str key), passes `check` and matches its checksum. Otherwise it
    warns (`TokenizedCacheWarning`, naming the file and what did not match), calls `build`
    and atomically replaces the file. `path` None: no cache, always `build`."""
    expected = _expected_identity(key)
    if path is not None and path.is_file():
        data, problem = _read_cached(path, expected, checksum, check)
        if data is not None:
            return data, True
        warnings.warn(
            f"tokenized cache file {path}: {problem}; rebuilding it from the source",
            TokenizedCacheWarning,
            stacklevel=3,
        )
    data = build()
    if path is not None:
        blob = {"format": CACHE_FORMAT, "identity": expected, "checksum": checksum(data),
                "data": data}  # fmt: skip
        torch_save_atomic(path, blob)
    return data, False


def load_or_tokenize(
    cache_dir: Path | None, key: str, build_examples, tokenizer, max_length: int
) -> tuple[dict, bool]:
    """(tokenized split, whether it came from the cache). `build_examples` is only called on a
    miss; see `load_or_build` for what makes a cached file usable."""
    path = None if cache_dir is None else Path(cache_dir) / "tokenized" / f"{key}.pt"
    return load_or_build(
        path, key, lambda: tokenize(build_examples(), tokenizer, max_length), check=_check_arrays
    )


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
