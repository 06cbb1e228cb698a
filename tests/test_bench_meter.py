"""bench_speed's step meter: rates and padding fractions against hand counts."""

from __future__ import annotations

import pytest
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


def test_deltas_bench_pairs_runs_adjacent_in_time():
    """bench_deltas: medians per side, the overhead of the medians, and each on/off ratio
    taken within one pair (off, on in pair 1; on, off in pair 2; ...), by hand."""
    from bench.bench_deltas import summarize

    def run(on, wall, cpu, tracker=0.0):
        return {"tracking": on, "wall_s": wall, "cpu_s": cpu, "tracker_s": tracker,
                "tracker_cpu_s": tracker / 2, "tracker_calls": 4 if on else 0}  # fmt: skip

    runs = [run(False, 10, 8), run(True, 11, 8.8, 1.0),  # pair 1
            run(True, 30, 9.0, 2.0), run(False, 20, 9.0),  # pair 2: a busier machine
            run(False, 12, 8.5), run(True, 12, 8.6, 1.2)]  # fmt: skip
    s = summarize(runs)
    assert s["median_off"] == {"wall_s": 12, "cpu_s": 8.5, "tracker_s": 0, "tracker_cpu_s": 0}
    assert s["median_on"]["wall_s"] == 12 and s["median_on"]["cpu_s"] == 8.8
    assert s["overhead_wall_pct"] == pytest.approx(0.0)
    assert s["overhead_cpu_pct"] == pytest.approx(100 * (8.8 / 8.5 - 1))
    assert s["pair_ratio_wall"] == pytest.approx([1.1, 1.5, 1.0])
    assert s["pair_ratio_cpu"] == pytest.approx([1.1, 1.0, 8.6 / 8.5])
    assert s["tracker_share_pct"] == pytest.approx(100 * 1.2 / 12)
    assert s["tracker_share_cpu_pct"] == pytest.approx(100 * 0.6 / 8.8)
    assert s["tracker_calls"] == 4


def test_stack_bench_alternates_which_way_runs_first(monkeypatch, tmp_path):
    """bench_stack: repeat 1 runs the four solo jobs then the stack, repeat 2 the stack first,
    and the cell's numbers come out the same whichever ran first."""
    import bench.bench_stack as bench_stack

    calls = []

    def fake_measure(spec):
        calls.append((spec["way"], tuple(spec["variants"])))
        seconds = 10.0 if spec["way"] == "solo" else 20.0
        return {"fit_s": seconds, "dev_s": 1.0, "wall_s": seconds + 5, "examples": 64,
                "dev": {v: 0.5 for v in spec["variants"]}, "device": "cpu"}  # fmt: skip

    monkeypatch.setattr(bench_stack, "measure", fake_measure)
    solo_first = bench_stack.run_cell({}, tmp_path, stack_first=False)
    order_1, calls[:] = list(calls), []
    stack_first = bench_stack.run_cell({}, tmp_path, stack_first=True)
    variants = tuple(bench_stack.VARIANTS)
    assert order_1 == [("solo", (v,)) for v in variants] + [("stacked", variants)]
    assert calls == [("stacked", variants)] + [("solo", (v,)) for v in variants]
    assert solo_first == stack_first
    assert solo_first["solo"]["cell_examples_per_s"] == 4 * 64 / 40
    assert solo_first["stacked"]["cell_examples_per_s"] == 4 * 64 / 20


def test_adaptive_bench_takes_a_real_studys_effects_and_spreads_from_its_runs_table(tmp_path):
    """bench_adaptive's measured scenarios: per task, each variant's mean minus the baseline's
    and every arm's own sd, from the report's runs.csv; a task without two baseline runs is
    left out. The right decisions follow the effect and the margin."""
    import pandas as pd

    from bench.bench_adaptive import BETTER, EQUIVALENT, WORSE, correct, measured_scenarios

    rows = [("stsb", "baseline", True, v) for v in (0.80, 0.82, 0.84)]
    rows += [("stsb", "k=1", False, v) for v in (0.10, 0.20)]
    rows += [("stsb", "k=6", False, v) for v in (0.81, 0.81, 0.84)]
    rows += [("cola", "baseline", True, 0.4), ("cola", "k=1", False, 0.0)]  # one baseline run
    study = tmp_path / "mystudy"
    (study / "report").mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=["task", "variant", "is_baseline", "primary"])
    frame.to_csv(study / "report" / "runs.csv", index=False)
    scenarios = measured_scenarios(study)
    assert list(scenarios) == ["mystudy: stsb"]
    s = scenarios["mystudy: stsb"]
    assert s["effects"] == pytest.approx({"k=1": 0.15 - 0.82, "k=6": 0.82 - 0.82})
    assert s["sds"] == pytest.approx({"baseline": 0.02, "k=1": 0.0707107, "k=6": 0.0173205})
    assert s["margin"] == 0.01 and s["seeds"] == 3
    assert correct(-0.6, 0.01) == [WORSE] and correct(0.0, 0.01) == [EQUIVALENT]
    assert correct(0.005, 0.01) == [BETTER, EQUIVALENT] and correct(0.02, 0.01) == [BETTER]
