"""Runs saved by adaptive seeds (`hydra.sweeper.seeds=adaptive`) against a fixed-n design with
the same error control and the same power, on simulated studies shaped like real ones.

    python bench/bench_adaptive.py [--quick] [--studies N] [--power P] [--grid] [--out results]

A simulated study is one cell (task, model, data, recipe): a baseline and its variants, with
effects from this project's MiniLM STS-B records (README's demo: k=1 -0.54, k=4 -0.63 Pearson
against the baseline) and the issue's shape (a far variant, a near one at +0.01, one at the
baseline):

* `far+near+zero`: k=1 (-0.6), near (+0.01), at baseline (0);
* `k=1,4 + near + zero`: k=1 (-0.54), k=4 (-0.63), near (+0.01), at baseline (0).

Every run's Pearson is normal around its variant's mean with the seed spread of this
project's own MiniLM records: `subset` sd 0.0197 (STS-B, 2,000-example subset, 1 epoch:
0.1714 0.1950 0.2005 0.1562 0.1613, tests/test_stack_minilm.py) with an equivalence margin of
0.05; `full` sd 0.0080 (the study's recipe: 0.8149 0.8108 0.8152 0.7955 0.8116,
docs/benchmarks.md) with a margin of 0.02. Variants share the cell's baseline runs.

Both designs use alpha 0.05 per task (Bonferroni over the comparisons) and the same decisions
(better/worse when the two-sided interval excludes 0, equivalent when the one-sided TOST
bounds lie within the margin), and
both are sized for the same power: the chance of deciding every variant correctly (worse for
the far ones, equivalent or better for +0.01, equivalent for 0) at least `--power` (0.9).
Fixed-n: one look at n seeds, n the smallest with that power. Adaptive: min_seeds 3, one seed
per stage, the default boundary (Wang-Tsiatis shape 0.25), max_seeds the smallest with that
power. Runs: the baseline's seeds (the most any variant used) plus each variant's, averaged
over the studies. The issue's policy (max_seeds 10) is shown too, with its power. Both designs
see the same simulated seeds; deterministic (seeded). `--quick`: 2,000 studies per scenario,
else 20,000.

`--study DIR` (default: the repository's `docs/study/minilm-cola-stsb`, when its report has
baseline runs): also one scenario per task of that real study, its variants' effects and every
arm's own seed sd taken from the report's `runs.csv` (each arm normal around its measured mean
with its measured sd), the study's margins (`STUDY_MARGINS`): how the policy does on the layer
sweep this tool exists for, where most variants are far. `--study none` skips it.

`--grid`: also, per scenario, the policy's own options over shape {0.1, 0.25, 0.4} x
min_seeds {2, 3, 4} x seeds_per_stage {1, 2, 3}, each with the smallest max_seeds reaching the
same power, and the setting with the fewest runs: whether any setting reaches a saving the
default does not.

Writes <out>/bench_adaptive.json and <out>/bench_adaptive.md (and bench_adaptive_grid.*).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from reinitlab.decide.rule import BETTER, EQUIVALENT, WORSE, Policy, sequential  # noqa: E402

BASELINE = 0.18
STUDIES = {
    "far+near+zero": {"k=1": -0.6, "near": 0.01, "zero": 0.0},
    "k=1,4 + near + zero": {"k=1": -0.54, "k=4": -0.63, "near": 0.01, "zero": 0.0},
}
SPREADS = {"subset": {"sd": 0.0197, "margin": 0.05}, "full": {"sd": 0.0080, "margin": 0.02}}
MOST_SEEDS = 40
STUDY = REPO / "docs" / "study" / "minilm-cola-stsb"
STUDY_MARGINS = {"cola": 0.03, "stsb": 0.01}  # the study's, fixed in docs/study/README.md
GRID = {"shape": (0.1, 0.25, 0.4), "min_seeds": (2, 3, 4), "seeds_per_stage": (1, 2, 3)}
DEFAULT = {"shape": 0.25, "min_seeds": 3, "seeds_per_stage": 1}


def correct(effect: float, margin: float) -> list[int]:
    """The decisions that are true of an effect: worse below 0, better above, equivalent
    inside the margin (a far variant: worse only; one at the baseline: equivalent only)."""
    right = [WORSE] if effect < 0 else [BETTER] if effect > 0 else []
    return right + ([EQUIVALENT] if abs(effect) < margin else [])


def simulate(
    effects: dict[str, float],
    sd: float,
    studies: int,
    seed: int,
    sds: dict[str, float] | None = None,
) -> np.ndarray:
    """Paired differences `[study, variant, seed]`: variants share the study's baseline runs.
    Every arm has spread `sd`, or its own (`sds`, the baseline's under "baseline")."""
    sds = sds or {name: sd for name in ["baseline", *effects]}
    rng = np.random.default_rng(seed)
    base = rng.normal(BASELINE, sds["baseline"], size=(studies, 1, MOST_SEEDS))
    means = np.array(list(effects.values()))[None, :, None] + BASELINE
    spread = np.array([sds[name] for name in effects])[None, :, None]
    return rng.normal(means, spread, size=(studies, len(effects), MOST_SEEDS)) - base


def power(decision: np.ndarray, effects: dict[str, float], margin: float) -> dict[str, float]:
    """Per variant, the share of studies that decided it correctly."""
    return {
        name: float(np.isin(decision[:, i], correct(e, margin)).mean())
        for i, (name, e) in enumerate(effects.items())
    }


def measured_scenarios(study: Path) -> dict[str, dict]:
    """Per task of a real study with baseline runs: each variant's effect (its mean minus the
    baseline's) and every arm's seed sd, from the study report's runs table."""
    runs_csv = study / "report" / "runs.csv"
    if not runs_csv.is_file():
        return {}
    runs = pd.read_csv(runs_csv)
    out = {}
    for task, g in runs.groupby("task"):
        base = g.loc[g["is_baseline"], "primary"]
        if task not in STUDY_MARGINS or len(base) < 2:
            continue
        arms = {
            variant: r["primary"]
            for variant, r in g[~g["is_baseline"]].groupby("variant")
            if len(r) >= 2
        }
        out[f"{study.name}: {task}"] = {
            "effects": {v: float(r.mean() - base.mean()) for v, r in arms.items()},
            "sds": {"baseline": float(base.std()), **{v: float(r.std()) for v, r in arms.items()}},
            "margin": STUDY_MARGINS[task],
            "seeds": int(len(base)),
        }
    return out


def adaptive_run(
    diffs: np.ndarray, effects: dict, margin: float, max_seeds: int, **options: float
) -> dict:
    """The adaptive design with `max_seeds` and the policy `options` (DEFAULT's otherwise)."""
    opts = {**DEFAULT, **options}
    policy = Policy(max_seeds=max_seeds, margin=margin, **opts)
    out = sequential(diffs[..., :max_seeds], policy, comparisons=len(effects))
    runs = out.n.sum(axis=1) + out.n.max(axis=1)  # the variants + the shared baseline
    return {
        "max_seeds": max_seeds,
        **opts,
        "runs": float(runs.mean()),
        "seeds": {v: float(out.n[:, i].mean()) for i, v in enumerate(effects)},
        "power": power(out.decision, effects, margin),
    }


def smallest_adaptive(
    diffs: np.ndarray, effects: dict, margin: float, target: float, **options: float
) -> dict | None:
    """The adaptive design with the smallest max_seeds that reaches `target` power."""
    for max_seeds in range(int(options.get("min_seeds", DEFAULT["min_seeds"])), MOST_SEEDS + 1):
        run = adaptive_run(diffs, effects, margin, max_seeds, **options)
        if min(run["power"].values()) >= target:
            return run
    return None


def smallest_fixed(diffs: np.ndarray, effects: dict, margin: float, target: float) -> dict | None:
    """The fixed-n design (one look at n seeds) with the smallest n that reaches `target`."""
    m = len(effects)
    for n in range(2, MOST_SEEDS + 1):
        decision = sequential(diffs[..., :n], Policy(n, n, margin=margin), m).decision
        p = power(decision, effects, margin)
        if min(p.values()) >= target:
            return {"n": n, "runs": (m + 1) * n, "power": p}
    return None


def scenario_data(study: str, spread: str, studies: int, seed: int, measured: dict | None = None):
    """A scenario's effects, spread, margin and simulated differences: a shape of STUDIES at
    a spread of SPREADS, or (`measured`) a task of a real study."""
    if measured is not None:
        effects, margin = measured["effects"], measured["margin"]
        sd = measured["sds"]["baseline"]
        return effects, sd, margin, simulate(effects, sd, studies, seed, sds=measured["sds"])
    effects, sd, margin = STUDIES[study], SPREADS[spread]["sd"], SPREADS[spread]["margin"]
    return effects, sd, margin, simulate(effects, sd, studies, seed)


def run_scenario(
    study: str, spread: str, studies: int, target: float, seed: int, measured: dict | None = None
) -> dict:
    effects, sd, margin, diffs = scenario_data(study, spread, studies, seed, measured)
    fixed = smallest_fixed(diffs, effects, margin, target)
    adaptive = smallest_adaptive(diffs, effects, margin, target)
    saved = None if not (fixed and adaptive) else 1 - adaptive["runs"] / fixed["runs"]
    return {
        "study": study,
        "spread": spread,
        "sd": sd,
        "margin": margin,
        "studies": studies,
        "power_target": target,
        "fixed": fixed,
        "adaptive": adaptive,
        "saved": saved,
        "issue_policy": adaptive_run(diffs, effects, margin, 10),
    }


def grid_search(scenarios: list[tuple[str, str]], studies: int, target: float) -> list[dict]:
    """Per scenario, every setting of GRID at the same power as the fixed design, and the one
    with the fewest runs. Settings outermost, so that one boundary calibration serves every
    scenario that uses the same looks."""
    data = {
        sc: scenario_data(*sc, studies, seed=i) for i, sc in enumerate(scenarios)
    }  # the same seeds as the main table
    fixed = {sc: smallest_fixed(d[3], d[0], d[2], target) for sc, d in data.items()}
    tried: dict[tuple[str, str], list[dict]] = {sc: [] for sc in scenarios}
    for shape in GRID["shape"]:
        for min_seeds in GRID["min_seeds"]:
            for per_stage in GRID["seeds_per_stage"]:
                opts = {"shape": shape, "min_seeds": min_seeds, "seeds_per_stage": per_stage}
                for sc, (effects, _, margin, diffs) in data.items():
                    run = smallest_adaptive(diffs, effects, margin, target, **opts)
                    if run is not None:
                        tried[sc].append(run)
    out = []
    for sc in scenarios:
        f = fixed[sc]
        default = next(r for r in tried[sc] if all(r[k] == v for k, v in DEFAULT.items()))
        best = min(tried[sc], key=lambda r: r["runs"])
        out.append(
            {
                "study": sc[0],
                "spread": sc[1],
                "studies": studies,
                "power_target": target,
                "fixed": f,
                "default": default,
                "best": best,
                "saved_default": 1 - default["runs"] / f["runs"],
                "saved_best": 1 - best["runs"] / f["runs"],
                "settings": len(tried[sc]),
            }
        )
    return out


def grid_markdown(results: list[dict]) -> str:
    lines = [
        "| study | spread | fixed runs | default: runs, saved | best setting (shape, min_seeds, "
        "seeds_per_stage, max_seeds) | best: runs, saved |",
        "|---|---|---:|---|---|---|",
    ]
    for r in results:
        d, b = r["default"], r["best"]
        setting = f"{b['shape']}, {b['min_seeds']}, {b['seeds_per_stage']}, {b['max_seeds']}"
        lines.append(
            f"| {r['study']} | {r['spread']} | {r['fixed']['runs']} | {d['runs']:.1f}, "
            f"{100 * r['saved_default']:.0f} % | {setting} | {b['runs']:.1f}, "
            f"{100 * r['saved_best']:.0f} % |"
        )
    return "\n".join(lines)


def fmt(d: dict[str, float], digits: int) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in d.values())


def markdown(results: list[dict]) -> str:
    lines = [
        "| study | spread (sd, margin) | fixed n | fixed runs | adaptive max_seeds | adaptive "
        "runs (mean) | runs saved | seeds per variant (adaptive) | power fixed | power "
        "adaptive | max_seeds 10: runs, power |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in results:
        f, a, i = r["fixed"], r["adaptive"], r["issue_policy"]
        # a design that needs more than MOST_SEEDS seeds per arm is said so; the cells that
        # compare the two designs stay empty
        over = f"> {MOST_SEEDS}"
        both = f is not None and a is not None
        cells = [
            r["study"],
            f"{r['spread']} ({r['sd']:.4g}, {r['margin']})",
            over if f is None else f["n"],
            f["runs"] if both else "",
            over if a is None else a["max_seeds"],
            f"{a['runs']:.1f}" if both else "",
            f"{100 * r['saved']:.0f} %" if both else "n/a",
            fmt(a["seeds"], 1) if both else "",
            fmt(f["power"], 3) if both else "",
            fmt(a["power"], 3) if both else "",
            f"{i['runs']:.1f}, {fmt(i['power'], 3)}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 studies per scenario")
    parser.add_argument("--studies", type=int, default=None, help="studies per scenario")
    parser.add_argument("--power", type=float, default=0.9, help="power both designs reach")
    parser.add_argument(
        "--grid", action="store_true", help="also search the policy's options per scenario"
    )
    parser.add_argument(
        "--study",
        default=str(STUDY),
        help="a real study's sweep dir whose report gives one more scenario per task "
        "('none': skip)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "results")
    args = parser.parse_args(argv)
    studies = args.studies or (2_000 if args.quick else 20_000)
    scenarios = [(s, p) for s in STUDIES for p in SPREADS]
    results = [
        run_scenario(study, spread, studies, args.power, seed=i)
        for i, (study, spread) in enumerate(scenarios)
    ]
    measured = {} if args.study == "none" else measured_scenarios(Path(args.study))
    for i, (name, m) in enumerate(measured.items(), len(results)):
        spread = f"measured, {m['seeds']} seeds"
        results.append(run_scenario(name, spread, studies, args.power, seed=i, measured=m))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_adaptive.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / "bench_adaptive.md").write_text(table + "\n")
    print(table)
    if args.grid:
        grid = grid_search(scenarios, studies, args.power)
        (args.out / "bench_adaptive_grid.json").write_text(json.dumps(grid, indent=2))
        table = grid_markdown(grid)
        (args.out / "bench_adaptive_grid.md").write_text(table + "\n")
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
