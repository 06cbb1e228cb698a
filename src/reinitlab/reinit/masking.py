"""mode=mask: ablate attention heads by zeroing their context vectors in the forward pass.

transformers 5 silently ignores `head_mask`, so we hook the attention output projection
instead: its input is the concatenation of the per-head context vectors (head h at columns
h*d..(h+1)*d), and a forward pre-hook multiplies the masked heads' columns by 0. The hook is
active in training and evaluation, leaves the weights alone, and is not part of the state dict.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from reinitlab.reinit.adapters import EncoderAdapter

_HANDLE = "_reinitlab_head_mask"  # attribute on the output projection holding (handle, heads)


def head_keep(
    heads: Iterable[int], head_size: int, width: int, dtype=None, device=None
) -> torch.Tensor:
    """The [width] vector an output projection's input is multiplied by: 0 on the columns of
    `heads` (head h owns columns h*head_size..(h+1)*head_size), 1 elsewhere."""
    keep = torch.ones(width, dtype=dtype, device=device)
    for h in heads:
        keep[h * head_size : (h + 1) * head_size] = 0
    return keep


class _ZeroHeadContext:
    """Forward pre-hook: multiply the given heads' input columns by 0."""

    def __init__(self, heads: tuple[int, ...], head_size: int):
        self.heads = heads
        self.head_size = head_size

    def __call__(self, module: nn.Module, args: tuple):
        x = args[0]
        keep = head_keep(self.heads, self.head_size, x.shape[-1], x.dtype, x.device)
        return (x * keep, *args[1:])

    def fingerprint(self) -> dict[str, object]:
        """What the hook does to the hidden states, for caches keyed by model state (the
        probe features): which heads it zeroes, of what size."""
        return {"zero_heads": list(self.heads), "head_size": self.head_size}


def install_head_masks(model: nn.Module, heads: Iterable[tuple[int, int]]) -> dict[int, tuple]:
    """Mask (layer, head) pairs (0-based). Idempotent: calling it again replaces, never stacks.

    Returns {layer: masked heads}.
    """
    adapter = EncoderAdapter(model)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    for layer, hs in by_layer.items():
        out = adapter.attention_projections(layer)[3]
        remove_head_mask(out)
        hook = _ZeroHeadContext(tuple(sorted(set(hs))), adapter.head_size)
        setattr(out, _HANDLE, (out.register_forward_pre_hook(hook), hook.heads))
    return {layer: tuple(sorted(set(hs))) for layer, hs in by_layer.items()}


def remove_head_mask(module: nn.Module) -> None:
    """Remove the head-mask hook from an output projection, if it has one."""
    current = getattr(module, _HANDLE, None)
    if current is not None:
        current[0].remove()
        delattr(module, _HANDLE)


def masked_heads(model: nn.Module) -> list[tuple[int, int]]:
    """The (layer, head) pairs (0-based) currently masked in `model`."""
    adapter = EncoderAdapter(model)
    found = []
    for i in range(adapter.num_layers):
        current = getattr(adapter.attention_projections(i)[3], _HANDLE, None)
        if current is not None:
            found += [(i, h) for h in current[1]]
    return found
