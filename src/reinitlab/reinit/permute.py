"""reinit=permute: run the pretrained layers in another order (weights kept)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from reinitlab.reinit.adapters import EncoderAdapter


def permute_layers(model: nn.Module, order: Sequence[int]) -> None:
    """Position i of the encoder now runs the layer that was at `order[i]` (0-based).

    Only the ModuleList is reordered: the layer modules (and their parameters, so an optimizer
    built before still holds them) are the same objects.
    """
    adapter = EncoderAdapter(model)
    layers = list(adapter.layers)
    if sorted(order) != list(range(len(layers))):
        raise ValueError(f"order {list(order)} is not a permutation of 0..{len(layers) - 1}")
    adapter.set_layers(layers[i] for i in order)
