"""One user-facing `seed`, three independent streams derived from it, each pinnable.

`seeds.train` (data order, dropout, classifier head), `seeds.reinit` (the re-initialized
values) and `seeds.subset` (which training examples `data.max_train_samples` keeps) default
to null, meaning "derive from `seed`". Deriving through a hash keeps the streams distinct,
so the reinit draw is not the same random numbers the training RNG starts with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from reinitlab.errors import ReinitlabError

STREAMS = ("train", "reinit", "subset")


def derive_seed(seed: int, stream: str) -> int:
    """A 31-bit seed for `stream`, a fixed hash of (`seed`, `stream`): the same across runs and
    machines, and different per stream."""
    digest = hashlib.sha256(f"reinitlab:{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def resolve_seeds(seed: int, pinned: Mapping[str, Any] | None) -> dict[str, int]:
    """{stream: seed} with pinned values kept as given and the rest derived from `seed`."""
    pinned = dict(pinned or {})
    unknown = sorted(set(pinned) - set(STREAMS))
    if unknown:
        raise ReinitlabError(f"seeds.{unknown[0]} is not a seed stream; streams: {list(STREAMS)}")
    for stream, value in pinned.items():
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise ReinitlabError(
                f"seeds.{stream}={value!r}: allowed: null (derived from `seed`) or an integer >= 0"
            )
    return {
        s: int(pinned[s]) if pinned.get(s) is not None else derive_seed(seed, s) for s in STREAMS
    }
