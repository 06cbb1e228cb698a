"""Two trainings that should end at the same weights, compared against how far they moved.

A fixed tolerance can exceed what a tensor moves at all (LayerNorm gains move about 1e-4 in a
few steps at lr 2e-5, so `rtol=1e-4` passes whatever happened to them). Instead every tensor's
difference between the runs must be a small share of its own movement from the initial
weights, and that movement must be real."""

from __future__ import annotations

import torch


def assert_same_end(
    final: dict[str, torch.Tensor],
    reference: dict[str, torch.Tensor],
    initial: dict[str, torch.Tensor],
    share: float = 0.01,
) -> dict[str, float]:
    """max |final - reference| <= share * max |reference - initial| for every float tensor,
    and each moved (> 0); other tensors must be equal. Returns each tensor's gap / movement.

    Attention key biases are left out: their gradient is 0 in exact arithmetic (softmax is
    unchanged by a constant added to every key's score), so their "movement" is Adam scaling
    up rounding noise and two exact computations need not agree there."""
    assert final.keys() == reference.keys() == initial.keys()
    ratios = {}
    for key, start in initial.items():
        if not start.is_floating_point():
            assert torch.equal(final[key], reference[key]), key
            continue
        if "key.bias" in key:
            continue
        moved = (reference[key] - start).abs().max().item()
        gap = (final[key] - reference[key]).abs().max().item()
        assert moved > 0, f"{key} did not move: comparing it would prove nothing"
        assert gap <= share * moved, f"{key}: differs by {gap:.3g}, moved {moved:.3g}"
        ratios[key] = gap / moved
    assert ratios, "no tensor compared"
    return ratios
