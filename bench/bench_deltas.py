"""What the weight-delta tracking (reinitlab.deltas.callback.DeltaTracker) costs a training job,
measured on and off against the default training loop.

    python bench/bench_deltas.py --quick            # a few minutes on 2 cores
    python bench/bench_deltas.py                    # the study's schedule: full CoLA, 3 epochs
    python bench/bench_deltas.py [--repeats R] [--train-samples N] [--epochs E] [--model M]
                                 [--threads T] [--out results]

Each run is one real job through `reinitlab.train.train` (bench_speed.run_reinitlab: the
default loop -- packed batches, fused AdamW, a full dev pass after every epoch, the result
record written), in a fresh process, with `deltas.enabled=true` (the default) or `false`;
nothing else differs. The two sides alternate (off, on, on, off, off, on, ...), so both see
the machine's load alike, and the tokenization cache is built before either side is timed.
Per run: the wall and CPU time of the job (`train()`: data from the cache, model load, the
fit, the dev passes, the record) and, with tracking on, the time spent inside the tracker
(built with the pretrained snapshot, the fit-start snapshot and CKA features, one
measurement per validation and at fit end), timed around its own methods.

Reported: medians per side, the overhead median(on) / median(off) - 1, the per-pair ratios
on / off of runs adjacent in time (their spread shows the noise), and the tracker's own time
(wall and CPU clock) as a share of the job. The CPU clock (process CPU time / torch threads)
is the steadier one on a shared machine: other processes inflate the wall clock. `--quick`: MiniLM on the first 2,144 CoLA examples (67 steps), 1 epoch,
3 pairs; the default: the study's schedule (all 8,551 examples, 3 epochs, 268 steps and one
validation per epoch), 3 pairs.

Writes <out>/bench_deltas.json and <out>/bench_deltas.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_speed import glue_dir, run_reinitlab, warm_tokenization  # noqa: E402

TRACKER_METHODS = ("from_config", "on_fit_start", "on_validation_end", "on_fit_end")

# ----------------------------------------------------------------------------- worker side


def time_tracker() -> list[tuple[float, float]]:
    """Wrap the tracker's entry points so the (wall, CPU) seconds spent inside them add up in
    the list."""
    from reinitlab.deltas.callback import DeltaTracker

    spent: list[tuple[float, float]] = []

    def timed(fn):
        def wrapper(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent.append((time.perf_counter() - t, time.process_time() - c))

        return wrapper

    for name in TRACKER_METHODS:
        raw = DeltaTracker.__dict__[name]
        if isinstance(raw, classmethod):
            setattr(DeltaTracker, name, classmethod(timed(raw.__func__)))
        else:
            setattr(DeltaTracker, name, timed(raw))
    return spent


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    spent = time_tracker()
    cached = set(Path(spec["cache_dir"]).rglob("*.pt"))
    wall, cpu = time.perf_counter(), time.process_time()
    out = run_reinitlab(spec)
    return {
        "tracking": spec["tracking"],
        "wall_s": time.perf_counter() - wall,
        "cpu_s": (time.process_time() - cpu) / spec["threads"],
        "tracker_s": sum(w for w, _ in spent),
        "tracker_cpu_s": sum(c for _, c in spent) / spec["threads"],
        "tracker_calls": len(spent),
        "dev_metric": out["dev_metric"],
        "tokenized_now": sorted(
            str(p) for p in set(Path(spec["cache_dir"]).rglob("*.pt")) - cached
        ),
    }


# ----------------------------------------------------------------------------- driver side


def job_overrides(args, tracking: bool) -> list[str]:
    samples = "null" if args.train_samples is None else args.train_samples
    return [f"data.max_train_samples={samples}", f"deltas.enabled={str(tracking).lower()}"]


def measure(spec: dict) -> dict:
    """One job in a fresh process; its timings."""
    with tempfile.TemporaryDirectory(prefix="bench_deltas_") as tmp:
        spec = {**spec, "workdir": tmp}
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])},
        )
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed (tracking {spec['tracking']}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(xs: list[float]) -> str:
    return f"{min(xs):.4f}..{max(xs):.4f}"


def summarize(runs: list[dict]) -> dict:
    side = {
        on: [r for r in runs if r["tracking"] is on] for on in (False, True)
    }  # runs in time order
    med = {
        on: {
            k: statistics.median(r[k] for r in rs)
            for k in ("wall_s", "cpu_s", "tracker_s", "tracker_cpu_s")
        }
        for on, rs in side.items()
    }
    pairs = list(zip(side[False], side[True], strict=True))  # repeat r: adjacent in time
    return {
        "median_off": med[False],
        "median_on": med[True],
        "overhead_wall_pct": 100 * (med[True]["wall_s"] / med[False]["wall_s"] - 1),
        "overhead_cpu_pct": 100 * (med[True]["cpu_s"] / med[False]["cpu_s"] - 1),
        "pair_ratio_wall": [on["wall_s"] / off["wall_s"] for off, on in pairs],
        "pair_ratio_cpu": [on["cpu_s"] / off["cpu_s"] for off, on in pairs],
        "tracker_share_pct": 100 * med[True]["tracker_s"] / med[True]["wall_s"],
        "tracker_share_cpu_pct": 100 * med[True]["tracker_cpu_s"] / med[True]["cpu_s"],
        "tracker_calls": side[True][0]["tracker_calls"],
    }


def to_markdown(result: dict) -> str:
    s, m = result["settings"], result["summary"]
    samples = s["train_samples"] or "all"
    lines = [
        "# Weight-delta tracking overhead: on vs off, the default loop",
        "",
        f"`{result['command']}`",
        "",
        f"{s['model']} on CoLA ({samples} training examples, {s['epochs']} epoch(s), "
        f"batch 32, one dev pass per epoch), {s['threads']} torch thread(s); "
        f"{s['repeats']} pairs, sides alternating, each job a fresh process, tokenization "
        f"cache warm for both. Load average before {result['load_before']}, after "
        f"{result['load_after']}.",
        "",
        "| tracking | job wall s (median) | job CPU s (median) | inside the tracker: wall s; "
        "CPU s |",
        "|---|---:|---:|---:|",
    ]
    for name, key in (("off", "median_off"), ("on", "median_on")):
        x = m[key]
        lines.append(
            f"| {name} | {x['wall_s']:.2f} | {x['cpu_s']:.2f} | {x['tracker_s']:.2f}; "
            f"{x['tracker_cpu_s']:.2f} |"
        )
    lines += [
        "",
        f"- overhead, median(on) / median(off) - 1: **{m['overhead_wall_pct']:+.2f}%** wall, "
        f"**{m['overhead_cpu_pct']:+.2f}%** CPU",
        f"- per-pair ratios on / off (the noise): wall {spread(m['pair_ratio_wall'])}, "
        f"CPU {spread(m['pair_ratio_cpu'])}",
        f"- time inside the tracker ({m['tracker_calls']} calls): "
        f"{m['median_on']['tracker_s']:.2f} s = **{m['tracker_share_pct']:.2f}%** of the job "
        f"(wall); {m['median_on']['tracker_cpu_s']:.2f} CPU s = "
        f"**{m['tracker_share_cpu_pct']:.2f}%** of its CPU time",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,144 examples, 1 epoch, 3 pairs")
    p.add_argument("--repeats", type=int, default=3, help="pairs of (off, on) runs")
    p.add_argument("--train-samples", type=int, default=None, help="default: 2144 quick, all")
    p.add_argument("--epochs", type=int, default=None, help="default: 1 quick, 3")
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if not glue_dir().is_dir():
        print(f"GLUE data not found at {glue_dir()}; set GLUE_DIR", file=sys.stderr)
        return 2
    if args.train_samples is None and args.quick:
        args.train_samples = 2144
    args.epochs = args.epochs or (1 if args.quick else 3)
    command = "python bench/bench_deltas.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_deltas_cache_") as cache:
        base = {
            "model": args.model,
            "task": "cola",
            "seed": args.seed,
            "threads": args.threads,
            "epochs": args.epochs,
            "cache_dir": cache,
        }
        warm_tokenization(
            cache,
            [f"model={args.model}", "task=cola", f"seed={args.seed}"] + job_overrides(args, True),
        )
        for r in range(args.repeats):
            for tracking in (False, True) if r % 2 == 0 else (True, False):
                out = measure(
                    {**base, "tracking": tracking, "overrides": job_overrides(args, tracking)}
                )
                if out["tokenized_now"]:
                    raise RuntimeError(f"the warm-up missed a split: {out['tokenized_now']}")
                runs.append(out)
                print(
                    f"[bench_deltas] pair {r + 1}/{args.repeats} tracking "
                    f"{'on' if tracking else 'off'}: {out['wall_s']:.1f} s wall, "
                    f"{out['cpu_s']:.1f} s CPU, tracker {out['tracker_s']:.2f} s wall, "
                    f"{out['tracker_cpu_s']:.2f} s CPU",
                    flush=True,
                )
    result = {
        "command": command.strip(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "summary": summarize(runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_deltas.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "bench_deltas.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
