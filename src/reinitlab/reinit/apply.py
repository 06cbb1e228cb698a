"""Write reset targets into a model with `torch.nn.init`, reproducibly from one seed.

We never call the model's `_init_weights`: in transformers 5 it skips weights that
`from_pretrained` loaded, so it would silently reset nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from reinitlab.reinit.targets import ResetTarget

TRUNC_SIGMAS = 2.0  # BERT's TF initializer: truncated_normal(stddev=0.02), cut at ±2σ


def apply_reset(
    model: nn.Module, targets: list[ResetTarget], std: float, seed: int
) -> dict[str, int]:
    """Overwrite the targets in place; returns {parameter name: number of values reset}.

    Values are drawn on the CPU from a generator seeded with `seed` alone, in target order,
    so the draw is identical on any device and independent of the global RNG.
    """
    params = dict(model.named_parameters())
    unknown = [t.name for t in targets if t.name not in params]
    if unknown:
        raise ValueError(f"reset targets not in the model: {unknown[:5]}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    counts: dict[str, int] = {}
    with torch.no_grad():
        for t in targets:
            param = params[t.name]
            view = param if t.index is None else param[t.index]
            if t.init == "normal":
                fresh = torch.empty(view.shape, dtype=torch.float32)
                nn.init.trunc_normal_(
                    fresh,
                    mean=0.0,
                    std=std,
                    a=-TRUNC_SIGMAS * std,
                    b=TRUNC_SIGMAS * std,
                    generator=gen,
                )
            elif t.init == "zeros":
                fresh = torch.zeros(view.shape)
            elif t.init == "ones":
                fresh = torch.ones(view.shape)
            else:
                raise ValueError(f"unknown init {t.init!r} for {t.name}")
            view.copy_(fresh.to(device=param.device, dtype=param.dtype))
            counts[t.name] = counts.get(t.name, 0) + view.numel()
    return counts
