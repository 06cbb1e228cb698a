"""Stacked training vs solo jobs: one reinit cell's variants as one stack or one job each.

    python bench/bench_stack.py [--quick] [--threads N] [--repeats R] [--train-samples N]
                                [--model minilm-l6 | --bert-base] [--precision P] [--task cola]
                                [--out results]

The cell: MiniLM (all-MiniLM-L6-v2, offline) on CoLA, 1 epoch, the study's recipe (batch 32,
lr 2e-5, max length 128, packed batches), seed 0, four variants: the baseline, k=5, k=3 and
k=1 (progressive reinit). Trained two ways, side by side in one run, each in a fresh process:

- solo: four jobs one after another (`reinitlab.train.train`, what `hydra/launcher=local`
  runs), and
- stacked: one job of four members (`reinitlab.stack.run.train_stack`, what
  `hydra/launcher=stacked` runs).

Reported per way: wall time (process start to the last result written: start-up, data,
model loads, training and the dev passes), the time of the training steps (forward, backward,
optimizer step) and of the dev passes, and examples/s per variant (training examples of one
variant / training-step seconds; in a stack every variant sees every example in the stack's
time).
The ratio stacked/solo of the cell's throughput is taken within the run: the machine is shared
and noisy. The tokenization cache is built before either way is timed, so both read it warm,
and repeats alternate which way runs first. `--quick` trains on the first 1,024 examples (about 4 minutes on 2 cores; the
full epoch is 8,551). On a CUDA machine the same command measures the GPU (the device the
jobs pick: trainer.accelerator=auto); `--bert-base --precision bf16-mixed` the BERT-base size.

Writes <out>/bench_stack.json and <out>/bench_stack.md.
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

from bench_gpu import BERT_BASE_OVERRIDES  # noqa: E402
from bench_speed import glue_dir, warm_tokenization  # noqa: E402

VARIANTS = {
    "baseline": "reinit=none",
    "k=5": "reinit.k=5",
    "k=3": "reinit.k=3",
    "k=1": "reinit.k=1",
}


# ----------------------------------------------------------------------------- worker side


def compose(spec: dict, variant: str, out: Path):
    """The job config of one variant, composed as train.py composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from reinitlab.paths import config_dir
    from reinitlab.training.builder import job_config

    GlobalHydra.instance().clear()
    overrides = [
        f"model={spec['model']}",
        *spec.get("model_overrides", []),
        f"trainer.precision={spec.get('precision', '32-true')}",
        f"task={spec['task']}",
        "logger=none",
        "trainer.max_epochs=1",
        "+trainer.enable_progress_bar=false",
        f"data.glue_dir={spec['glue_dir']}",
        f"data.cache_dir={spec['cache_dir']}",
        f"data.max_train_samples={spec['train_samples']}",
        f"paths.output_dir={out}",
        VARIANTS[variant],
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides)
    return OmegaConf.create(job_config(cfg))


def fit_clock():
    """A Lightning callback that times the training batches (forward, backward, optimizer
    step) and the dev passes apart, and counts one variant's training examples."""
    import lightning as L

    class FitClock(L.Callback):
        def __init__(self):
            self.seconds = 0.0
            self.dev_seconds = 0.0
            self.examples = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seconds += time.perf_counter() - self._t
            self.examples += len(batch["labels"])

        def on_validation_epoch_start(self, trainer, pl_module):
            self._v = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module):
            self.dev_seconds += time.perf_counter() - self._v

    return FitClock()


def worker(spec: dict) -> dict:
    """Train spec["variants"] solo (one) or stacked (several); return the timings."""
    import torch

    from reinitlab.training.console import quiet_console

    torch.set_num_threads(spec["threads"])
    quiet_console()
    out = Path(spec["out"])
    clock = fit_clock()
    if spec["way"] == "solo":
        from reinitlab.train import train

        (variant,) = spec["variants"]
        record = train(compose(spec, variant, out / variant.replace("=", "")), [clock])
        results = {variant: record["final"]["metrics"]["val/primary"]}
        device = record["device"]
    else:
        from reinitlab.stack.run import StackMember, train_stack

        members = [
            StackMember(compose(spec, v, out / v.replace("=", ""))) for v in spec["variants"]
        ]
        outcomes = train_stack(members, extra_callbacks=[clock])
        bad = [o for o in outcomes if not isinstance(o, dict)]
        if bad:
            raise RuntimeError(f"a stack member failed: {bad[0]}")
        results = {
            v: o["final"]["metrics"]["val/primary"]
            for v, o in zip(spec["variants"], outcomes, strict=True)
        }
        device = outcomes[0]["device"]
    return {
        "fit_s": clock.seconds,
        "dev_s": clock.dev_seconds,
        "examples": clock.examples,
        "dev": results,
        "device": device,
    }


# ----------------------------------------------------------------------------- driver side


def measure(spec: dict) -> dict:
    """One worker in a fresh process; its timings plus the process's wall time."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", f.name], capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({spec['way']}):\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall}


def run_cell(base: dict, out: Path, stack_first: bool = False) -> dict:
    """The four variants solo (four processes) and stacked (one); timings of each way.
    `stack_first`: the stack runs before the solo jobs (repeats alternate the order)."""
    variants = list(VARIANTS)

    def run_solo():
        return [
            measure({**base, "way": "solo", "variants": [v], "out": str(out / "solo")})
            for v in variants
        ]

    def run_stack():
        return measure({**base, "way": "stacked", "variants": variants, "out": str(out / "stack")})

    if stack_first:
        stack = run_stack()
        solo = run_solo()
    else:
        solo = run_solo()
        stack = run_stack()
    examples = solo[0]["examples"]  # one variant's training examples (1 epoch)
    solo_fit = sum(r["fit_s"] for r in solo)
    return {
        "solo": {
            "wall_s": sum(r["wall_s"] for r in solo),
            "fit_s": solo_fit,
            "dev_s": sum(r["dev_s"] for r in solo),
            "examples_per_s_per_variant": examples / statistics.mean(r["fit_s"] for r in solo),
            "cell_examples_per_s": len(variants) * examples / solo_fit,
            "dev": {v: r["dev"][v] for v, r in zip(variants, solo, strict=True)},
            "device": solo[0]["device"],
        },
        "stacked": {
            "wall_s": stack["wall_s"],
            "fit_s": stack["fit_s"],
            "dev_s": stack["dev_s"],
            "examples_per_s_per_variant": examples / stack["fit_s"],
            "cell_examples_per_s": len(variants) * examples / stack["fit_s"],
            "dev": stack["dev"],
            "device": stack["device"],
        },
        "examples": examples,
    }


def to_markdown(result: dict) -> str:
    s = result["settings"]
    model = "BERT-base size (random weights)" if s["bert_base"] else s["model"]
    lines = [
        "# Stacked training vs solo jobs",
        "",
        f"{model} on {s['task']}, 1 epoch of {result['runs'][0]['examples']} training "
        f"examples, {len(VARIANTS)} variants ({', '.join(VARIANTS)}), batch 32, "
        f"{s['threads']} torch threads, {s['precision']}, device "
        f"{result['runs'][0]['solo']['device']}; "
        f"medians of {len(result['runs'])} repeat(s) (alternating which way runs first), "
        "each way in fresh processes, the tokenization cache built before either is timed.",
        "",
        "| way | wall time (s) | training steps (s) | dev passes (s) | examples/s per variant "
        "| cell examples/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for way in ("solo", "stacked"):
        m = result["median"][way]
        lines.append(
            f"| {way} | {m['wall_s']:.1f} | {m['fit_s']:.1f} | {m['dev_s']:.1f} | "
            f"{m['examples_per_s_per_variant']:.1f} | {m['cell_examples_per_s']:.1f} |"
        )
    r = result["ratios"]
    lines += [
        "",
        f"stacked / solo: cell throughput x{r['throughput']:.2f}, wall time "
        f"x{r['wall']:.2f} (below 1: the stack takes less time).",
        "",
        "Dev metric after the epoch (the first repeat): "
        + "; ".join(
            f"{v}: solo {result['runs'][0]['solo']['dev'][v]:.4f}, "
            f"stacked {result['runs'][0]['stacked']['dev'][v]:.4f}"
            for v in VARIANTS
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1,024 training examples, 1 repeat")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=None, help="default: 1 quick, 2 full")
    p.add_argument("--train-samples", type=int, default=None, help="default: 1024 quick, all")
    p.add_argument("--model", default="minilm-l6")
    p.add_argument(
        "--bert-base",
        action="store_true",
        help="a BERT-base-size model (random weights, bench_gpu.py's) instead of --model",
    )
    p.add_argument("--precision", default="32-true", help="trainer.precision (GPU: bf16-mixed)")
    p.add_argument("--task", default="cola")
    p.add_argument("--out", type=Path, default=REPO / "results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    samples = args.train_samples or (1024 if args.quick else None)
    repeats = args.repeats or (1 if args.quick else 2)
    with tempfile.TemporaryDirectory() as tmp:
        base = {
            "model": args.model,
            "model_overrides": BERT_BASE_OVERRIDES if args.bert_base else [],
            "precision": args.precision,
            "task": args.task,
            "threads": args.threads,
            "glue_dir": str(glue_dir()),
            "cache_dir": str(Path(tmp) / "cache"),
            "train_samples": "null" if samples is None else samples,
        }
        # Both ways read the same cache, built before either is timed (no cold first side).
        warm_tokenization(
            base["cache_dir"],
            [
                f"model={args.model}",
                *base["model_overrides"],
                f"task={args.task}",
                f"data.max_train_samples={base['train_samples']}",
            ],
        )
        runs = []
        for r in range(repeats):
            order = "1 stack, then 4 solo jobs" if r % 2 else "4 solo jobs, then 1 stack"
            print(f"[bench_stack] repeat {r + 1}/{repeats}: {order}", flush=True)
            runs.append(run_cell(base, Path(tmp) / f"r{r}", stack_first=bool(r % 2)))
    median = {
        way: {
            key: statistics.median(run[way][key] for run in runs)
            for key in (
                "wall_s",
                "fit_s",
                "dev_s",
                "examples_per_s_per_variant",
                "cell_examples_per_s",
            )
        }
        for way in ("solo", "stacked")
    }
    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
        "runs": runs,
        "median": median,
        "ratios": {
            "throughput": median["stacked"]["cell_examples_per_s"]
            / median["solo"]["cell_examples_per_s"],
            "wall": median["stacked"]["wall_s"] / median["solo"]["wall_s"],
        },
    }
    result["settings"]["train_samples"] = samples
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_stack.json").write_text(json.dumps(result, indent=2, default=str))
    md = to_markdown(result)
    (args.out / "bench_stack.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
