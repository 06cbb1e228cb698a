"""`reinitlab report`: synthetic sweeps with known values (exact aggregates, pairing, tests, Holm,
bootstrap), the files it writes (CSV/Parquet, PNG/SVG, self-contained HTML), bad input, and one
real tiny multirun end to end."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reinitlab.cli import main as cli_main
from reinitlab.errors import ReinitlabError
from reinitlab.report.build import build_report
from reinitlab.report.stats import bootstrap_ci, holm
from reinitlab.training.record import write_result
from tests.helpers import GLUE, REPO, needs_glue

L = 3  # layers of the synthetic model


def progressive_value(k: int, seed: int) -> float:
    """A known dev metric: fewer pretrained layers kept -> lower, plus a per-seed offset and a
    small (k, seed) wiggle so deltas are not constant."""
    return round(0.60 - 0.05 * (L + 1 - k) + 0.01 * seed + 0.003 * (((k + 1) * (seed + 2)) % 5), 6)


def head_value(layer: int, head: int, seed: int) -> float:
    return round(0.55 + 0.01 * seed - 0.004 * layer * head + 0.002 * ((layer + head + seed) % 3), 6)


def record(task, scheme, seed, primary, max_train_samples=None, model="tiny", **extra):
    label = scheme.get("label") or scheme["name"]
    metrics = {"val/mcc": primary, "val/primary": primary}
    val = {"epoch": 0, "step": 2, "metrics": metrics}
    return {
        "status": "completed",
        "task": task,
        "model": model,
        "num_layers": L,
        "scheme": {**scheme, "label": label},
        "seed": seed,
        "seeds": {"train": 100 + seed, "reinit": 200 + seed, "subset": 300 + seed},
        "primary_metric": "mcc",
        "train_size": max_train_samples or 8551,
        "max_train_samples": max_train_samples,
        "final": val,
        "best": val,
        "history": [val],
        "steps": 2,
        "wall_time_s": 1.5,
        "config": {
            "seed": seed,
            "trainer": {"max_epochs": 1},
            "optim": {"lr": 2e-5},
            "data": {"max_train_samples": max_train_samples},
            "early_stopping": None,
        },
        **extra,
    }


def write_job(sweep: Path, num: int, overrides: list[str], rec: dict | None, log: str = "") -> Path:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "train.log").write_text(log or "[2026-11-23 12:00:00,000][reinitlab][INFO] - start\n")
    if rec is not None:
        rec["config"].setdefault("paths", {"output_dir": str(job)})
        write_result(job, rec)
    return job


def progressive_scheme(k: int) -> dict:
    return {
        "name": "progressive",
        "k": k,
        "pooler": False,
        "label": "baseline" if k == L + 1 else f"k={k}",
    }


def multirun_yaml(seeds: str) -> str:
    """The plan Hydra records for `task=rte reinit.k=1,2,3,4 seed=<seeds>` (basic sweeper)."""
    return (
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        "    max_batch_size: null\n    params:\n      reinit.k: 1,2,3,4\n"
        f"  overrides:\n    hydra: []\n    task:\n    - seed={seeds}\n    - task=rte\n"
    )


def make_progressive_sweep(root: Path) -> Path:
    """k=1..4 x seed 0..2 planned (multirun.yaml); k=4 (baseline) seed=2 never started; k=3
    seed=1 failed with an error in its log."""
    sweep = root / "multirun" / "prog"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(multirun_yaml("0,1,2"))
    num = 0
    for k in (1, 2, 3, 4):
        for seed in (0, 1, 2):
            overrides = [f"reinit.k={k}", f"seed={seed}", "task=rte"]
            if (k, seed) == (4, 2):
                continue  # missing: the sweep was cut before this job
            if (k, seed) == (3, 1):
                write_job(
                    sweep,
                    num,
                    overrides,
                    None,
                    log="[2026-11-23 12:00:00,000][reinitlab][INFO] - start\n"
                    "[2026-11-23 12:00:01,000][reinitlab][ERROR] - CUDA out of memory\n",
                )
            else:
                rec = record("rte", progressive_scheme(k), seed, progressive_value(k, seed))
                write_job(sweep, num, overrides, rec)
            num += 1
    return sweep


def make_heads_sweep(root: Path, seeds=range(6), with_deltas=False) -> Path:
    """Heads (layer 1, 3) x (head 1, 2) x seeds, plus reinit=none baselines; no multirun.yaml."""
    sweep = root / "multirun" / "heads"
    num = 0
    for seed in seeds:
        extra = {}
        if with_deltas:
            extra = {"deltas": fake_deltas(seed, 0.0)}
        rec = record(
            "cola",
            {"name": "none", "pooler": False, "label": "baseline"},
            seed,
            head_value(0, 0, seed) + 0.01,
            **extra,
        )
        write_job(sweep, num, ["reinit=none", f"seed={seed}"], rec)
        num += 1
        for layer in (1, 3):
            for head in (1, 2):
                scheme = {
                    "name": "heads",
                    "layer": layer,
                    "head": head,
                    "mode": "reinit",
                    "label": f"L{layer}H{head}",
                }
                if with_deltas:
                    extra = {"deltas": fake_deltas(seed, layer * 0.1)}
                rec = record("cola", scheme, seed, head_value(layer, head, seed), **extra)
                write_job(
                    sweep,
                    num,
                    [
                        "reinit=heads",
                        f"reinit.layer={layer}",
                        f"reinit.head={head}",
                        f"seed={seed}",
                    ],
                    rec,
                )
                num += 1
    return sweep


def fake_deltas(seed: int, shift: float) -> dict:
    layer = [0.1 * (i + 1) + shift + 0.01 * seed for i in range(L)]
    return {
        "layer_names": [f"layer_{i + 1}" for i in range(L)],
        "layer": {"all": layer, "attention": [v / 2 for v in layer], "ffn": [v * 2 for v in layer]},
        "head": [[0.01 * (i + j) + shift for j in range(4)] for i in range(L)],
    }


# --- pure statistics ----------------------------------------------------------------------


def test_holm_matches_a_hand_computation():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> step-down max -> 0.06
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # capped at 1, NaN kept out of the family (m=2 here)
    out = holm([0.6, math.nan, 0.7])
    assert np.allclose(out[[0, 2]], [1.0, 1.0]) and math.isnan(out[1])
    assert np.allclose(holm([0.01, math.nan, 0.02]), [0.02, math.nan, 0.02], equal_nan=True)


def test_bootstrap_ci_contains_the_mean_and_is_reproducible():
    x = [0.51, 0.55, 0.48, 0.60, 0.53]
    lo, hi = bootstrap_ci(x, n_resamples=2000, seed=3)
    assert lo < statistics.mean(x) < hi and min(x) <= lo and hi <= max(x)
    assert (lo, hi) == bootstrap_ci(x, n_resamples=2000, seed=3)
    assert (lo, hi) != bootstrap_ci(x, n_resamples=2000, seed=4)
    assert all(math.isnan(v) for v in bootstrap_ci([0.5]))
    # drawn from a known distribution, the interval covers the true mean (fixed draw)
    sample = np.random.default_rng(0).normal(0.7, 0.05, size=20)
    lo, hi = bootstrap_ci(sample, seed=0)
    assert lo < 0.7 < hi and hi - lo < 0.1
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


# --- the report over synthetic sweeps -------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    prog = make_progressive_sweep(root)
    heads = make_heads_sweep(root, with_deltas=True)
    out = root / "report"
    report = build_report([prog, heads], out, n_resamples=2000, seed=0)
    return prog, heads, out, report


def test_runs_csv_has_one_row_per_record_and_flattened_columns(synthetic):
    prog, heads, out, _ = synthetic
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 10 + 30  # 12 planned - 1 missing - 1 failed; 6 seeds x (1 + 4) heads
    for col in (
        "task",
        "model",
        "scheme",
        "label",
        "seed",
        "seeds.subset",
        "primary",
        "final.val/mcc",
        "scheme.k",
        "scheme.layer",
        "scheme.head",
        "train_size",
        "max_train_samples",
        "wall_time_s",
        "steps",
        "config.trainer.max_epochs",
        "config.optim.lr",
        "is_baseline",
        "run_dir",
    ):
        assert col in runs.columns, col
    assert runs["is_baseline"].sum() == 2 + 6  # k=4 seeds 0,1 and reinit=none x 6
    parquet = pd.read_parquet(out / "runs.parquet")
    assert len(parquet) == len(runs) and list(parquet.columns) == list(runs.columns)
    row = runs[(runs["scheme"] == "progressive") & (runs["scheme.k"] == 2) & (runs["seed"] == 1)]
    assert row["primary"].item() == pytest.approx(progressive_value(2, 1))


def test_aggregates_equal_a_hand_computation(synthetic):
    _, _, out, _ = synthetic
    agg = pd.read_csv(out / "aggregates.csv")
    for k in (1, 2, 3, 4):
        seeds = [s for s in (0, 1, 2) if (k, s) not in ((3, 1), (4, 2))]
        values = [progressive_value(k, s) for s in seeds]
        row = agg[(agg["scheme"] == "progressive") & (agg["scheme.k"] == k)]
        assert row["n"].item() == len(values)
        assert row["mean"].item() == pytest.approx(statistics.mean(values), abs=1e-12)
        assert row["std"].item() == pytest.approx(statistics.stdev(values), abs=1e-12)
        if len(values) >= 3:  # Student's t interval at this n
            lo, hi = sps.t.interval(0.95, len(values) - 1, statistics.mean(values), sps.sem(values))
            assert (row["ci_low"].item(), row["ci_high"].item()) == pytest.approx((lo, hi))
            assert row["ci_method"].item() == "t"
        else:  # 2 runs: no interval
            assert math.isnan(row["ci_low"].item()) and math.isnan(row["ci_high"].item())
            assert row["ci_method"].item() == "none (n=2 < 3)"
        assert row["seeds"].item() == ",".join(map(str, seeds))
    heads = agg[(agg["scheme"] == "heads") & (agg["head_layer"] == 3) & (agg["head_index"] == 2)]
    values = [head_value(3, 2, s) for s in range(6)]
    assert heads["mean"].item() == pytest.approx(statistics.mean(values), abs=1e-12)


def test_deltas_are_paired_by_seed_and_an_unpaired_run_stays_unpaired(synthetic):
    _, _, out, _ = synthetic
    deltas = pd.read_csv(out / "deltas.csv")
    prog = deltas[deltas["scheme"] == "progressive"]
    for _, row in prog.iterrows():
        k, seed = int(row["scheme.k"]), int(row["seed"])
        if seed == 2:  # its baseline (k=4, seed=2) never ran: not matched to seed 0 or 1
            assert row["baseline_missing"] and math.isnan(row["delta"])
        else:
            expected = progressive_value(k, seed) - progressive_value(4, seed)
            assert row["delta"] == pytest.approx(expected, abs=1e-12)
    heads = deltas[deltas["scheme"] == "heads"]
    assert len(heads) == 24 and not heads["baseline_missing"].any()
    for _, row in heads.iterrows():
        layer, head, seed = int(row["head_layer"]), int(row["head_index"]), int(row["seed"])
        expected = head_value(layer, head, seed) - (head_value(0, 0, seed) + 0.01)
        assert row["delta"] == pytest.approx(expected, abs=1e-12)


def test_paired_tests_and_holm_per_figure(synthetic):
    _, _, out, _ = synthetic
    cells = pd.read_csv(out / "delta_cells.csv")
    prog = cells[cells["scheme"] == "progressive"].sort_values("scheme.k")
    assert list(prog["scheme.k"]) == [1, 2, 3]
    for _, row in prog.iterrows():
        k = int(row["scheme.k"])
        seeds = [s for s in (0, 1) if (k, s) != (3, 1)]  # seed 2 unpaired; k=3 seed 1 failed
        run = [progressive_value(k, s) for s in seeds]
        base = [progressive_value(4, s) for s in seeds]
        assert row["n_pairs"] == len(seeds) and row["n_unpaired"] == 1
        d = [a - b for a, b in zip(run, base, strict=True)]
        assert row["mean_delta"] == pytest.approx(statistics.mean(d), abs=1e-12)
        # 1 or 2 pairs: no test (a paired t test with 1 degree of freedom is not evidence)
        assert row["test"] == f"none (n={len(seeds)} < 3)" and math.isnan(row["p"])
        assert math.isnan(row["ci_low"]) and row["ci_method"].startswith("none")
    heads = cells[cells["scheme"] == "heads"]
    assert (heads["test"] == "wilcoxon").all() and (heads["n_pairs"] == 6).all()
    for _, row in heads.iterrows():
        layer, head = int(row["head_layer"]), int(row["head_index"])
        run = [head_value(layer, head, s) for s in range(6)]
        base = [head_value(0, 0, s) + 0.01 for s in range(6)]
        assert row["p"] == pytest.approx(sps.wilcoxon(run, base).pvalue)
    # Holm by hand within each figure: sort, multiply by (m - rank), running max, cap at 1
    for _, fam in cells.groupby(["scheme"]):
        ok = fam[fam["p"].notna()].sort_values("p")
        m, running = len(ok), 0.0
        for rank, (_, row) in enumerate(ok.iterrows()):
            running = max(running, min(1.0, (m - rank) * row["p"]))
            assert row["p_holm"] == pytest.approx(running) and row["family_size"] == m
    assert (cells.loc[cells["scheme"] == "heads", "family_size"] == 4).all()


def test_summary_tables_describe_the_head_deltas(synthetic):
    _, _, out, _ = synthetic
    per_layer = pd.read_csv(out / "summary_per_layer.csv")
    assert list(per_layer["head_layer"]) == [1, 3]
    d = [head_value(3, h, s) - head_value(0, 0, s) - 0.01 for h in (1, 2) for s in range(6)]
    row = per_layer[per_layer["head_layer"] == 3].iloc[0]
    assert row["count"] == 12 and row["mean"] == pytest.approx(statistics.mean(d))
    assert row["std"] == pytest.approx(statistics.stdev(d))
    assert row["min"] == pytest.approx(min(d)) and row["max"] == pytest.approx(max(d))
    assert row["50%"] == pytest.approx(float(np.median(d)))
    per_head = pd.read_csv(out / "summary_per_head.csv")
    assert list(per_head["head_index"]) == [1, 2] and (per_head["count"] == 12).all()


def check_figures(out: Path, report) -> None:
    import matplotlib.image as mpimg

    assert report.figures
    for fig in report.figures:
        png, svg = Path(fig["png"]), Path(fig["svg"])
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 200
        assert img[..., :3].std() > 0.01  # not a blank canvas
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg")


def test_figures_exist_as_readable_png_and_svg(synthetic):
    _, _, out, report = synthetic
    check_figures(out, report)
    names = {Path(f["png"]).name.split("_")[0] for f in report.figures}
    assert {"layers", "heads", "movement", "head"} <= names


def test_html_is_self_contained_and_lists_failed_and_missing_runs(synthetic):
    _, _, out, report = synthetic
    page = (out / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(report.figures) and all(
        s.startswith("data:image/png;base64,") for s in srcs
    )
    assert "<link" not in page and "<script" not in page
    assert "CUDA out of memory" in page and str(Path("prog") / "7") in page  # failed job k=3 seed=1
    assert "planned but never started" in page and "reinit.k=4 seed=2 task=rte" in page
    assert "<b>40</b> done" in page and "<b class='bad'>1</b> failed" in page
    assert (
        "Paired deltas vs baseline" in page and "wilcoxon" in page and "none (n=2 &lt; 3)" in page
    )
    assert "Holm" in page and "Per-layer summary" in page and "reinit.k=1,2,3,4" in page
    problems = pd.read_csv(out / "problems.csv")
    assert sorted(problems["kind"]) == ["failed", "missing"]


def test_baseline_from_the_same_sweep_first_then_from_another_given_dir(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_job(a, 0, ["reinit.k=1"], record("cola", progressive_scheme(1), 0, 0.30))
    write_job(a, 1, ["reinit.k=4"], record("cola", progressive_scheme(4), 0, 0.50))
    write_job(a, 2, ["reinit.k=1"], record("cola", progressive_scheme(1), 1, 0.31))
    write_job(b, 0, ["reinit=none"], record("cola", {"name": "none"}, 0, 0.70))
    write_job(b, 1, ["reinit=none"], record("cola", {"name": "none"}, 1, 0.60))
    write_job(b, 2, ["reinit.k=2"], record("cola", progressive_scheme(2), 0, 0.40))
    d = build_report([a, b], tmp_path / "out", n_resamples=200).deltas.set_index(["label", "seed"])
    assert d.loc[("k=1", 0), "delta"] == pytest.approx(0.30 - 0.50)  # a's own baseline
    assert d.loc[("k=1", 1), "delta"] == pytest.approx(0.31 - 0.60)  # only b has seed 1
    assert d.loc[("k=2", 0), "delta"] == pytest.approx(0.40 - 0.70)  # b's own baseline


def test_block_and_permutation_bars_and_duplicate_dirs(tmp_path):
    sweep = tmp_path / "multirun" / "blocks"
    num = 0
    values = {}
    for seed in (0, 1, 2):
        schemes = [{"name": "none", "label": "baseline"}]
        schemes += [{"name": "block", "start": s, "width": 2, "label": "block"} for s in (1, 2)]
        schemes += [{"name": "permute", "permutation_seed": p, "label": "permute"} for p in (5, 6)]
        for scheme in schemes:
            pos = scheme.get("start", scheme.get("permutation_seed", 0))
            value = 0.5 + 0.01 * seed - 0.02 * pos + 0.001 * ((pos * seed) % 3)
            values[(scheme["name"], pos, seed)] = value
            write_job(sweep, num, [f"n={num}"], record("stsb", scheme, seed, value))
            num += 1
    # the same sweep reached twice (as itself and through its parent) counts once
    report = build_report([sweep, sweep.parent], tmp_path / "out", n_resamples=500)
    assert len(report.runs) == 15
    bars = sorted(Path(f["png"]).name for f in report.figures)
    assert bars == ["bars_stsb_tiny_all_block_width_2.png", "bars_stsb_tiny_all_permute.png"]
    check_figures(tmp_path / "out", report)
    cells = report.delta_cells.set_index("variant")
    # variants are the registry's labels, not the records' (here deliberately bare) ones
    expected_keys = {
        ("block", 1): "block 1-2",
        ("block", 2): "block 2-3",
        ("permute", 6): "perm seed 6",
    }
    for (name, pos), variant in expected_keys.items():
        d = [values[(name, pos, s)] - values[("none", 0, s)] for s in (0, 1, 2)]
        row = cells.loc[variant]
        assert row["mean_delta"] == pytest.approx(statistics.mean(d)) and row["n_pairs"] == 3
        # permutation_seed 6 has a constant delta (no variance): p is NaN and not in the family
        assert row["family_size"] == (2 if name == "block" else 1)
    assert math.isnan(cells.loc["perm seed 6", "p"])


def test_transfer_matrix_from_intermediate_task_chains(tmp_path):
    sweep = tmp_path / "multirun" / "chains"
    tasks, chains = ("cola", "rte"), ([], ["cola"], ["rte"], ["mrpc", "rte"])

    def value(task, chain, seed):
        gain = {"cola": 0.02, "rte": -0.01, "mrpc": 0.015}
        return round(
            0.5
            + 0.1 * (task == "rte")
            + 0.01 * seed
            + sum(gain[t] for t in chain)
            + 0.002 * ((seed * len(chain) + len(task)) % 3),
            6,
        )

    num = 0
    for task in tasks:
        for chain in chains:
            for seed in (0, 1, 2):
                rec = record(
                    task,
                    {"name": "none", "label": "baseline"},
                    seed,
                    value(task, chain, seed),
                    intermediate=chain,
                )
                rec["config"]["intermediate"] = chain
                write_job(
                    sweep, num, [f"task={task}", f"intermediate={chain}", f"seed={seed}"], rec
                )
                num += 1
    report = build_report([sweep], tmp_path / "out", n_resamples=500)
    t = report.transfer.set_index(["task", "chain"])
    assert sorted(set(t.index.get_level_values("chain"))) == ["cola", "mrpc→rte", "none", "rte"]
    for task in tasks:
        direct = [value(task, [], s) for s in (0, 1, 2)]
        for chain in chains[1:]:
            row = t.loc[(task, "→".join(chain))]
            run = [value(task, chain, s) for s in (0, 1, 2)]
            assert row["mean"] == pytest.approx(statistics.mean(run))
            assert row["mean_delta"] == pytest.approx(
                statistics.mean(run) - statistics.mean(direct)
            )
            assert row["p"] == pytest.approx(sps.ttest_rel(run, direct).pvalue)
            assert row["better_than_direct"] == (statistics.mean(run) > statistics.mean(direct))
    tested = report.transfer[report.transfer["p"].notna()]
    assert np.allclose(tested["p_holm"], holm(tested["p"]))  # one family: the matrix
    assert len(tested) == 6
    # the reinit-vs-baseline cells stay per chain: each chain is its own aggregate cell
    assert len(report.aggregates) == 8 and set(report.aggregates["chain"]) == set(t.index.levels[1])
    names = sorted(Path(f["png"]).name for f in report.figures)
    assert names == ["transfer_delta_tiny_all.png", "transfer_tiny_all.png"]
    check_figures(tmp_path / "out", report)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Transfer matrix" in page and "mrpc→rte" in page
    assert (tmp_path / "out" / "transfer.csv").is_file()


def test_probe_results_are_drawn_beside_the_reinit_curve(tmp_path):
    sweep = tmp_path / "probe"
    names = ["embeddings", "layer_01", "layer_02", "layer_03"]

    def probe(seed, stage):
        shift = 0.1 if stage == "after" else 0.0
        return {
            "layer_names": names,
            "primary_metric": "mcc",
            "metric": [0.1 + 0.05 * i + 0.01 * seed + shift for i in range(4)],
            "variability": [None] + [3.0 - ell + seed for ell in (1, 2, 3)],
        }

    num = 0
    for seed in (0, 1):
        for k in (1, 2, 3, 4):
            extra = {}
            if k == 4:
                extra = {"probe": {"before": probe(seed, "before"), "after": probe(seed, "after")}}
            write_job(
                sweep,
                num,
                [f"k={k}", f"seed={seed}"],
                record("cola", progressive_scheme(k), seed, progressive_value(k, seed), **extra),
            )
            num += 1
        # runs of other figures at the same k, ranked the other way: not on the curve
        for k in (1, 2, 3):
            zero = {**progressive_scheme(k), "mode": "zero", "label": f"k={k} zero"}
            overrides = [f"k={k}", "mode=zero", f"seed={seed}"]
            write_job(sweep, num, overrides, record("cola", zero, seed, 0.7 - 0.2 * k))
            num += 1
        heads = {"name": "heads", "layer": 1, "head": 1, "mode": "reinit", "label": "L1H1"}
        write_job(sweep, num, ["heads", f"seed={seed}"], record("cola", heads, seed, 0.0))
        num += 1
    report = build_report([sweep], tmp_path / "out", n_resamples=300)
    probes = pd.read_csv(tmp_path / "out" / "probes.csv")
    row = probes[(probes["stage"] == "after") & (probes["layer"] == 2)].iloc[0]
    assert row["n"] == 2 and row["probe_metric"] == pytest.approx(0.1 + 0.1 + 0.005 + 0.1)
    row = probes[(probes["stage"] == "before") & (probes["layer"] == 1)].iloc[0]
    assert row["variability"] == pytest.approx(statistics.mean([3.0 - 1 + 0, 3.0 - 1 + 1]))
    assert probes.loc[probes["layer"] == 0, "variability"].isna().all()  # null NC stays missing
    # Spearman: pretrained probe metric of layer l vs baseline - mean metric at k = l
    base = statistics.mean(progressive_value(4, s) for s in (0, 1))
    drop = [base - statistics.mean(progressive_value(k, s) for s in (0, 1)) for k in (1, 2, 3)]
    probe_before = [0.1 + 0.05 * ell + 0.005 for ell in (1, 2, 3)]
    expected = sps.spearmanr(probe_before, drop)
    assert probes["spearman_rho"].iloc[0] == pytest.approx(expected.statistic)
    figs = [f for f in report.figures if Path(f["png"]).name.startswith("probe_")]
    assert len(figs) == 1 and "Spearman" in figs[0]["caption"]
    check_figures(tmp_path / "out", report)
    assert "Probing per layer" in (tmp_path / "out" / "report.html").read_text()


def test_metric_choice_final_best_and_auto(tmp_path):
    sweep = tmp_path / "plateau"
    for num, (k, early) in enumerate(
        [(1, None), (4, None), (1, {"patience": 1}), (4, {"patience": 1})]
    ):
        rec = record("cola", progressive_scheme(k), num, 0.3 + 0.1 * num)
        rec["best"] = {"epoch": 1, "step": 4, "metrics": {"val/primary": 0.9 + 0.01 * num}}
        rec["config"]["early_stopping"] = early
        write_job(sweep, num, [f"n={num}"], rec)
    auto = build_report([sweep], tmp_path / "a", n_resamples=200).runs.sort_values("seed")
    assert auto["metric_source"].tolist() == ["final", "final", "best", "best"]
    assert auto["primary"].tolist() == pytest.approx([0.3, 0.4, 0.92, 0.93])
    # early stopping on/off is a varied config key: it splits the cells instead of mixing them
    assert auto["factors"].tolist()[2] == "early_stopping.patience=1.0"
    assert auto["factors"].nunique() == 2
    final = build_report([sweep], tmp_path / "f", metric="final", n_resamples=200).runs
    assert sorted(final["primary"]) == pytest.approx([0.3, 0.4, 0.5, 0.6])
    with pytest.raises(ReinitlabError, match="--metric"):
        build_report([sweep], tmp_path / "x", metric="last")


def test_baseline_detection():
    from reinitlab.reinit import scheme_is_baseline as is_baseline

    assert is_baseline({"name": "none", "pooler": False}, 3)
    assert is_baseline({"name": "progressive", "k": None}, 3)
    assert is_baseline({"name": "progressive", "k": 4}, 3)
    assert is_baseline({"name": "custom", "label": "baseline"}, 3)
    assert not is_baseline({"name": "progressive", "k": 3}, 3)
    assert not is_baseline({"name": "heads", "layer": 1, "head": 1}, 3)
    # the pooler re-initialized: not the untouched model
    assert not is_baseline({"name": "none", "pooler": True, "label": "baseline"}, 3)
    assert not is_baseline({"name": "progressive", "k": 4, "pooler": True}, 3)


def test_single_seed_reports_deltas_without_significance(tmp_path):
    sweep = tmp_path / "one"
    for num, k in enumerate((1, 2, 4)):
        write_job(
            sweep,
            num,
            [f"reinit.k={k}"],
            record("rte", progressive_scheme(k), 0, progressive_value(k, 0)),
        )
    report = build_report([sweep], tmp_path / "out", n_resamples=500)
    cells = report.delta_cells
    assert (cells["test"] == "none (n=1 < 3)").all() and cells["p"].isna().all()
    assert cells["mean_delta"].tolist() == pytest.approx(
        [progressive_value(k, 0) - progressive_value(4, 0) for k in (1, 2)]
    )
    assert any(n.startswith("Single seed") for n in report.notes)
    assert "Single seed" in (tmp_path / "out" / "report.html").read_text()


def test_a_study_whose_baselines_have_not_run_is_not_called_single_seed_and_stays_quiet(
    tmp_path, capsys
):
    """A study in progress: 24 jobs planned, only k=1's three seeds done (no baseline yet). Its
    notes say there is no baseline, not "single seed" (three seeds are there), and the console
    shows the first 10 of its 21 jobs not yet started and where all of them are."""
    sweep = tmp_path / "multirun" / "study"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(multirun_yaml("0,1,2,3,4,5"))
    for seed in (0, 1, 2):
        rec = record("rte", progressive_scheme(1), seed, progressive_value(1, seed))
        write_job(sweep, seed, ["reinit.k=1", f"seed={seed}", "task=rte"], rec)
    out = tmp_path / "rep"
    assert cli_main(["report", str(sweep), "--out", str(out), "--bootstrap", "200"]) == 0
    err = capsys.readouterr().err
    assert "Single seed" not in err and "fewer than 3 seeds" not in err
    assert "No baseline runs" in err
    assert err.count("planned but never started") == 10
    assert f"11 more missing job(s) not shown; all 21 in {out / 'problems.csv'}" in err
    problems = pd.read_csv(out / "problems.csv")
    assert (problems["kind"] == "missing").sum() == 21
    aggregates = pd.read_csv(out / "aggregates.csv")
    assert aggregates["n"].tolist() == [3] and aggregates["ci_method"].tolist() == ["t"]


def test_data_size_curve_when_max_train_samples_varies(tmp_path):
    sweep = tmp_path / "sizes"
    num = 0
    for size in (32, 64, 128):
        for k in (1, 4):
            for seed in (0, 1):
                value = progressive_value(k, seed) + 0.001 * size
                write_job(
                    sweep,
                    num,
                    [f"data.max_train_samples={size}"],
                    record("cola", progressive_scheme(k), seed, value, max_train_samples=size),
                )
                num += 1
    report = build_report([sweep], tmp_path / "out", n_resamples=500)
    datasize = [f for f in report.figures if Path(f["png"]).name.startswith("datasize_")]
    assert len(datasize) == 1
    check_figures(tmp_path / "out", report)
    # one layer curve per training-set size, each paired within its own size
    assert len([f for f in report.figures if Path(f["png"]).name.startswith("layers_")]) == 3
    d = report.deltas
    row = d[(d["size"] == "64") & (d["seed"] == 1)].iloc[0]
    assert row["delta"] == pytest.approx(progressive_value(1, 1) - progressive_value(4, 1))


def test_wandb_summary_run_is_offline_in_the_sweeps_group(tmp_path, capsys, monkeypatch):
    from tests.helpers.wandb_reader import find_run_files, read_run

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    sweep = tmp_path / "2026-11-23_12-00-00_abcd"
    for num, (k, seed) in enumerate([(1, 0), (4, 0), (1, 1), (4, 1)]):
        write_job(
            sweep,
            num,
            [f"reinit.k={k}", f"seed={seed}"],
            record("cola", progressive_scheme(k), seed, progressive_value(k, seed)),
        )
    out = tmp_path / "rep"
    assert cli_main(["report", str(sweep), "--out", str(out), "--bootstrap", "200", "--wandb"]) == 0
    assert "W&B summary run in" in capsys.readouterr().out
    files = find_run_files(out)
    assert len(files) == 1 and "offline-run-" in str(files[0])
    run = read_run(files[0])
    assert run["group"] == sweep.name and run["job_type"] == "report"
    assert run["project"] == "reinitlab" and run["config"]["bootstrap_resamples"] == 200
    assert run["summary"]["runs_done"] == 4 and run["summary"]["runs_missing"] == 0
    logged = run["history"][0]
    assert logged["report/aggregates"]["_type"] == "table-file"
    assert logged["report/paired_deltas"]["_type"] == "table-file"
    images = [k for k in logged if k.startswith("figures/layers_")]
    assert len(images) == 1 and logged[images[0]]["_type"] == "image-file"


# --- bad input --------------------------------------------------------------------------


def test_bad_input_empty_dir_no_records_and_a_corrupt_record(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReinitlabError, match="empty"):
        build_report([empty], tmp_path / "out")
    junk = tmp_path / "junk"
    (junk / "sub").mkdir(parents=True)
    (junk / "sub" / "notes.txt").write_text("hello")
    with pytest.raises(ReinitlabError, match="no result records"):
        build_report([junk], tmp_path / "out")
    assert cli_main(["report", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "is empty" in capsys.readouterr().err
    # a sweep whose every job failed still gets a report that lists them
    failed = tmp_path / "failed"
    write_job(
        failed, 0, ["reinit.k=9"], None, log="[x][reinitlab][ERROR] - reinit.k=9 is out of range\n"
    )
    report = build_report([failed], tmp_path / "failed_out")
    assert report.runs.empty and [p.kind for p in report.collection.problems] == ["failed"]
    assert "reinit.k=9 is out of range" in (tmp_path / "failed_out" / "report.html").read_text()
    with pytest.raises(ReinitlabError, match="not a directory"):
        build_report([tmp_path / "nowhere"], tmp_path / "out")

    sweep = tmp_path / "sweep"
    for num, k in enumerate((1, 4)):
        write_job(
            sweep,
            num,
            [f"reinit.k={k}"],
            record("cola", progressive_scheme(k), 0, progressive_value(k, 0)),
        )
    bad = write_job(sweep, 2, ["reinit.k=2"], None)
    (bad / "result.json").write_text('{"task": "cola", "model": ')  # cut short
    assert (
        cli_main(["report", str(sweep), "--out", str(tmp_path / "rep"), "--bootstrap", "200"]) == 0
    )
    captured = capsys.readouterr()
    assert f"corrupt: {bad / 'result.json'}" in captured.err and "not valid JSON" in captured.err
    assert "2 runs done" in captured.out and "1 corrupt" in captured.out
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv")
    assert sorted(runs["scheme.k"]) == [1, 4]
    assert str(bad / "result.json") in (tmp_path / "rep" / "report.html").read_text()


def test_an_unreadable_multirun_yaml_is_said_and_the_missing_count_marked_incomplete(
    tmp_path, capsys
):
    """The progressive sweep plans 12 jobs, one never started: counted from an intact
    multirun.yaml; from a damaged one the report says which file, why, and that jobs never
    started are not counted, in the collection, on the console, in the html and problems.csv."""
    from reinitlab.report.collect import collect

    sweep = make_progressive_sweep(tmp_path)
    intact = collect([sweep])
    assert intact.sweeps[0]["planned"] == 12
    assert sorted(p.kind for p in intact.problems) == ["failed", "missing"]
    multirun = sweep / "multirun.yaml"
    text = multirun.read_text()

    def plan_problems(content: str) -> list:
        multirun.write_text(content)
        col = collect([sweep])
        assert [p.kind for p in col.problems if p.kind != "plan"] == ["failed"]  # none missing
        assert col.sweeps[0]["planned"] is None and col.sweeps[0]["plan_error"]
        return [p for p in col.problems if p.kind == "plan"]

    # not YAML, a sweep that does not parse, another sweeper: each named with its reason
    (broken,) = plan_problems(text.replace("    params:\n", "    params: [\n"))
    assert broken.where == str(multirun) and f"{multirun} could not be read" in broken.reason
    assert "cannot be counted" in broken.reason
    (unparsed,) = plan_problems(text.replace("reinit.k: 1,2,3,4", "reinit.k: range(1,"))
    assert "its sweep could not be expanded" in unparsed.reason and "range(1," in unparsed.reason
    optuna = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    (other,) = plan_problems(
        text.replace("hydra._internal.core_plugins.basic_sweeper.BasicSweeper", optuna)
    )
    assert "basic sweeper only" in other.reason and optuna in other.reason

    multirun.write_text(text.replace("    params:\n", "    params: [\n"))
    out = tmp_path / "rep"
    assert cli_main(["report", str(sweep), "--out", str(out), "--bootstrap", "200"]) == 0
    captured = capsys.readouterr()
    assert f"reinitlab report: plan: {multirun}" in captured.err
    assert f"{multirun} could not be read" in captured.err
    assert "0 missing (not counted in 1 sweep(s) whose plan could not be read)" in captured.out
    page = (out / "report.html").read_text()
    assert "The missing count is incomplete" in page and f"{multirun} could not be read" in page
    assert "unknown: its plan could not be read" in page
    problems = pd.read_csv(out / "problems.csv")
    assert sorted(problems["kind"]) == ["failed", "plan"]
    # no multirun.yaml at all: no plan, and nothing to say about one
    multirun.unlink()
    assert [p.kind for p in collect([sweep]).problems] == ["failed"]


# --- a real tiny multirun -------------------------------------------------------------------


@pytest.mark.slow
@needs_glue
def test_report_over_a_real_tiny_multirun(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    sweep = tmp_path / "multirun" / "tiny"
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "model=tiny",
        "logger=none",
        "task=wnli",
        "reinit.k=1,4",
        "seed=0,1",
        "data.max_train_samples=64",
        "trainer.max_epochs=1",
        "probe.before=true",
        "probe.after=true",
        f"data.glue_dir={GLUE}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "report"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "reinitlab.cli",
            "report",
            str(sweep),
            "--out",
            str(out),
            "--bootstrap",
            "500",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert "4 runs done, 0 failed, 0 missing" in cli.stdout
    for name in (
        "runs.csv",
        "runs.parquet",
        "aggregates.csv",
        "deltas.csv",
        "delta_cells.csv",
        "report.html",
    ):
        assert (out / name).is_file(), name
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and set(runs["label"]) == {"k=1", "baseline"}
    deltas = pd.read_csv(out / "deltas.csv")
    for _, row in deltas.iterrows():
        base = runs[(runs["label"] == "baseline") & (runs["seed"] == row["seed"])]["primary"].item()
        assert row["delta"] == pytest.approx(row["primary"] - base)
    import matplotlib.image as mpimg

    for prefix in ("layers_", "probe_"):
        pngs = sorted((out / "figures").glob(f"{prefix}*.png"))
        assert len(pngs) == 1 and mpimg.imread(pngs[0]).shape[0] > 150
        ET.parse(pngs[0].with_suffix(".svg"))
    probes = pd.read_csv(out / "probes.csv")  # the baseline runs' probes, layers 0..3
    assert sorted(set(probes["layer"])) == [0, 1, 2, 3] and set(probes["n"]) == {2}
    assert set(probes["stage"]) == {"before", "after"}
    # the layer curve, the probe figure and the weight movement (per layer, per head)
    figures = sorted(p.name.split("_wnli")[0] for p in (out / "figures").glob("*.png"))
    assert figures == ["head_movement", "layers", "movement", "probe"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "reinit.k=1,4" in page
    from tests.test_report_paper import assert_report_prints

    assert_report_prints(out)  # `pdflatex report.tex` prints the study as a journal takes it
    (first,) = sweep.glob("0_*/result.json")  # job dirs: <number>_<hash of overrides>
    assert json.loads(first.read_text())["task"] == "wnli"


def test_page_names_seed_values_train_size_rounds_wall_time_shows_every_metric(tmp_path):
    """A one-seed STS-B run: the page's seed column lists seed values under a name that is no
    count, says which size it means, rounds wall time to 0.1 s, shows Spearman beside the
    primary Pearson, and counts the best epoch from 1 in runs.csv as on the console."""
    sweep = tmp_path / "stsb"
    for num, k in enumerate((1, 4)):
        rec = record("stsb", progressive_scheme(k), 0, 0.8 - 0.1 * (4 - k), wall_time_s=112.25)
        rec["primary_metric"] = "pearson"
        rec["final"]["metrics"] = {"val/pearson": 0.7, "val/spearman": 0.6543, "val/primary": 0.7}
        rec["best"] = {"epoch": 1, "step": 4, "metrics": rec["final"]["metrics"]}
        write_job(sweep, num, ["task=stsb", f"reinit.k={k}", "seed=0"], rec)
    out = tmp_path / "out"
    build_report([sweep], out, n_resamples=100)
    page = (out / "report.html").read_text()
    headers = re.findall(r"<th>(.*?)</th>", page)
    assert "seeds" not in headers and "size" not in headers
    assert {"seed values", "seeds (count)", "train examples", "dev spearman"} <= set(headers)
    assert "wall time (s)" in headers and "best epoch (1-based)" in headers
    assert "<td>112.2</td>" in page and "112.2500" not in page
    assert "<td>0.6543</td>" in page  # Spearman on the page
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["best_epoch"]) == [2, 2]  # the record's epoch 1 is the second epoch
    assert runs["final.val/spearman"].tolist() == [0.6543, 0.6543]
