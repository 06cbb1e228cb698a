"""bench_speed's step meter: rates and padding fractions against hand counts."""

from __future__ import annotations

import torch

from bench.bench_speed import StepMeter


def mask(lengths: list[int]) -> dict[str, torch.Tensor]:
    width = max(lengths)
    return {"attention_mask": torch.tensor([[1] * n + [0] * (width - n) for n in lengths])}


def test_window_counts_padding_of_the_batch_and_of_the_positions_computed():
    whole = StepMeter()
    split = StepMeter("split", split_overhead_tokens=5)
    packed = StepMeter("pack")
    for meter in (whole, split, packed):
        for step, lengths in enumerate([[10, 10, 2, 2], [4, 4, 4, 4], [10, 10, 2, 2]]):
            meter.record_batch(mask(lengths))
            meter.times.append(float(step))
            meter.cpu.append(float(step) / 2)
    w, s, p = (m.window(warmup=1, steps=2) for m in (whole, split, packed))
    # steps 2 and 3: 8 examples, 16 + 24 real tokens, 40 + 16 padded slots, in 2 s wall and
    # 1 s of process CPU time, which the meter divides by torch's thread count
    assert w["examples_per_s"] == 4.0
    assert w["examples_per_cpu_s"] == 8.0 * torch.get_num_threads()
    assert w["tokens_per_s"] == 20.0
    assert w["pad_fraction"] == w["pad_fraction_computed"] == 1 - 40 / 56
    # split: [10, 10] + [2, 2] costs 24 + 2 x 5 < 40 + 5, so 16 + 24 positions are computed
    assert s["pad_fraction"] == 1 - 40 / 56 and s["pad_fraction_computed"] == 0.0
    # packed: [10, 10, 2, 2] -> rows of 10: [10], [10], [2, 2] = 30 positions; [4] x 4 -> 16
    assert p["pad_fraction_computed"] == 1 - 40 / 46
