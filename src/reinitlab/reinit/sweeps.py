"""Sweep values the `experiment/` presets derive from the model's size.

A preset cannot hard-code "k = 1..L+1" or "layers 1, 2, L-1, L": L depends on `model=...`.
Given the layer and head counts, `sweep_values` returns Hydra's sweep syntax; every list starts
with the scheme's baseline value, so a preset's sweep is self-contained. Reading the counts from
the chosen model's config is the resolver's part (`reinitlab.resolvers`): this package stays
pure PyTorch and does not load model configs.
"""

from __future__ import annotations


def edge_layers(num_layers: int) -> list[int]:
    """The first two and last two layers (1-based), e.g. 1,2,11,12 for BERT-base."""
    return sorted({1, 2, num_layers - 1, num_layers} & set(range(1, num_layers + 1)))


def sweep_values(what: str, num_layers: int, num_heads: int, width: int = 3) -> str:
    """Hydra sweep syntax for one preset key (a scheme's `preset` name); baseline first."""
    from reinitlab.reinit.schemes import SCHEMES

    presets = {s.preset: s for s in SCHEMES.values() if s.preset}
    if what not in presets:
        raise ValueError(f"unknown sweep {what!r}; known: {list(presets)}")
    return presets[what].sweep(num_layers, num_heads, width)
