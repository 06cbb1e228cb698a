"""Speed benchmark: reinitlab's training loop side by side with the Hugging Face Trainer.

    python bench/bench_speed.py [--quick] [--threads N] [--repeats R] [--out results]

In one run, with the same model (all-MiniLM-L6-v2, offline), data (GLUE TSVs from $GLUE_DIR or
../shared/data/glue), recipe (lr 2e-5, batch 32, weight decay 0.01, 10% warmup, clip 1.0),
seed and torch thread count:

1. reinitlab's loop (examples/s over a fixed number of steps after warm-up, peak RSS), with
   its speed-ups on (the defaults) and off (`optim.remove_padding=off optim.fused=false`),
   and in full mode each on its own and the opt-in length-grouped batches;
2. the HF `Trainer` as a user would run it (run_glue.py style): static padding to 128
   (run_glue's default) and dynamic padding (`DataCollatorWithPadding`);
3. the model FLOP rate, 6 x non-embedding parameters x non-pad tokens / s, as a fraction of
   an fp32 2048x2048 matmul measured in the same worker just before it trains (CoLA and RTE);
4. per-job sweep overhead: process start -> first optimizer step, and job 1 vs job 2 of a
   two-job multirun (tokenization cache hit, model load), with and without the W&B logger;
5. hook for other benchmarks: `measure(spec)` runs one worker (a fresh process) and returns
   its numbers; `spec["overrides"]` takes extra Hydra overrides for the reinitlab loop (the
   weight-delta benchmark, bench/bench_deltas.py, measures its own on/off overhead), and
   `spec["model"]` another `model/` config for both loops (bench/bench_mpnet.py: mpnet-base).

Every measurement runs in a fresh process (so peak memory and caches are its own), the
configurations are interleaved and repeated, and medians are reported: the machine is
shared, so ratios from the same run are the figures that matter. The full mode (without
--quick) adds 1-epoch runs (STS-B by default) over several seeds to compare the dev metric of
reinitlab's configurations and the dynamic-padding Trainer against seed noise.

Writes <out>/bench_speed.json and <out>/bench_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RECIPE = {"lr": 2e-5, "batch_size": 32, "weight_decay": 0.01, "warmup_ratio": 0.1, "clip": 1.0}
MAX_LENGTH = 128


def glue_dir() -> Path:
    return Path(os.environ.get("GLUE_DIR") or REPO.parent / "shared" / "data" / "glue")


def warm_tokenization(cache_dir: str | Path, overrides: list[str]) -> None:
    """Tokenize into `cache_dir` every split that a job composed with `overrides` reads, before
    anything is timed: otherwise the side of a comparison that runs first pays the cold cache
    and every later one reads it warm."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from reinitlab.job import check_job
    from reinitlab.paths import config_dir
    from reinitlab.training.builder import build_data
    from reinitlab.training.models import load_tokenizer

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[*overrides, f"data.glue_dir={glue_dir()}", f"data.cache_dir={cache_dir}"],
        )
    spec = check_job(cfg)
    build_data(spec.task, load_tokenizer(cfg.model), cfg.data, spec.seeds)
    GlobalHydra.instance().clear()


# ----------------------------------------------------------------------------- worker side


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """fp32 n x n matmul rate, the peak the model FLOP rate is compared to: the fastest of
    `reps` (a peak; other processes on a shared machine can only slow a repetition down)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        a @ b
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    # per CPU-second of one thread x threads: comparable with the training's CPU-time rate
    threads = torch.get_num_threads()
    return 2 * n**3 / min(wall) / 1e9, 2 * n**3 / (min(cpu) / threads) / 1e9


class RssSampler:
    """Peak resident memory of this process while training (torch allocates outside
    Python's allocator, so tracemalloc cannot see it): psutil RSS sampled every 20 ms."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.start_rss = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.start_rss = self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


class StepMeter:
    """Per-step wall clock (taken after each optimizer step) and batch token counts."""

    def __init__(self, remove_padding: str = "off", split_overhead_tokens: float = 128):
        self.times: list[float] = []
        self.cpu: list[float] = []
        # per batch: examples, non-pad tokens, padded width*n, and each row's token count
        # (the positions a packed or split step computes are derived in window(), off the clock)
        self.batches: list[tuple[int, int, int, list[int]]] = []
        self.remove_padding = remove_padding
        self.split_overhead_tokens = split_overhead_tokens

    def record_batch(self, batch) -> None:
        mask = batch["attention_mask"]
        lengths = mask.sum(dim=1).tolist()
        self.batches.append((int(mask.shape[0]), sum(lengths), int(mask.numel()), lengths))

    def computed_positions(self, lengths: list[int], padded: int) -> int:
        """Positions the model computes: the padded batch, its packed rows, or its pieces."""
        if self.remove_padding == "pack":
            from reinitlab.data.packing import pack_plan

            return len(pack_plan(lengths)) * max(lengths)
        if self.remove_padding == "split":
            from reinitlab.data.length_split import split_plan

            pieces = split_plan(lengths, self.split_overhead_tokens)
            return sum(len(p) * max(lengths[i] for i in p) for p in pieces)
        return padded

    def step(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # CUDA runs ahead of Python: time the finished step
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def window(self, warmup: int, steps: int) -> dict:
        """Rates over steps warmup+1 .. warmup+steps (the clock of step `warmup` is the start)."""
        if len(self.times) < warmup + steps:
            raise RuntimeError(f"only {len(self.times)} steps ran, need {warmup + steps}")
        elapsed = self.times[warmup + steps - 1] - self.times[warmup - 1]
        # CPU time of the process (all threads) / threads: what the steps cost without the
        # waiting that other processes on a shared machine add to the wall clock
        threads = __import__("torch").get_num_threads()
        cpu = (self.cpu[warmup + steps - 1] - self.cpu[warmup - 1]) / threads
        chunk = self.batches[warmup : warmup + steps]
        examples = sum(b[0] for b in chunk)
        tokens = sum(b[1] for b in chunk)
        slots = sum(b[2] for b in chunk)
        computed = sum(self.computed_positions(b[3], b[2]) for b in chunk)
        return {
            "seconds": elapsed,
            "examples_per_s": examples / elapsed,
            "tokens_per_s": tokens / elapsed,
            "cpu_seconds": cpu,
            "examples_per_cpu_s": examples / cpu,
            "tokens_per_cpu_s": tokens / cpu,
            "pad_fraction": 1 - tokens / slots,
            "pad_fraction_computed": 1 - tokens / computed,
            "step_ms": 1000 * elapsed / steps,
            "steps": steps,
        }


def non_embedding_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in f".{n}")


def run_reinitlab(spec: dict) -> dict:
    import lightning as L
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from reinitlab.paths import config_dir
    from reinitlab.train import train

    meter = StepMeter()
    info: dict = {}

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            info["non_embedding_params"] = non_embedding_params(pl_module.model)
            info["sampler"] = type(trainer.train_dataloader.batch_sampler).__name__
            info["optimizer_fused"] = bool(trainer.optimizers[0].defaults.get("fused"))
            info["remove_padding"] = pl_module.padding_removal  # after any fallback
            meter.remove_padding = info["remove_padding"]
            meter.split_overhead_tokens = pl_module.split_overhead_tokens
            info["rss"] = RssSampler().__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            meter.step()
            meter.record_batch(batch)

        def on_train_end(self, trainer, pl_module):
            info["rss"].__exit__()

    steps = spec["warmup"] + spec["steps"] if spec.get("steps") else None
    overrides = [
        f"model={spec.get('model', 'minilm-l6')}",
        f"task={spec['task']}",
        "logger=none",
        f"seed={spec['seed']}",
        f"data.glue_dir={glue_dir()}",
        f"data.cache_dir={spec['cache_dir']}",
        f"paths.output_dir={spec['workdir']}",
        f"trainer.max_epochs={spec.get('epochs', 1)}",
        f"++trainer.enable_progress_bar={not steps}",
        *(
            [f"+trainer.limit_train_batches={steps}", "+trainer.limit_val_batches=1"]
            if steps
            else []
        ),
        *spec.get("overrides", []),
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
    record = train(cfg, extra_callbacks=[Probe()])
    rss = info.pop("rss")
    out = {
        **info,
        "peak_rss_mb": rss.peak / 2**20,
        "train_rss_mb": (rss.peak - rss.start_rss) / 2**20,
    }
    if steps:
        out.update(meter.window(spec["warmup"], spec["steps"]))
    else:
        out["dev_metric"] = record["final"]["metrics"]["val/primary"]
        out["train_seconds"] = meter.times[-1] - meter.times[0] if meter.times else None
    return out


def model_path(name: str) -> str:
    """Where `model=<name>` loads from (reinitlab's own resolution: package, pieces or hub), so
    the HF Trainer reference trains the very same weights and tokenizer."""
    from omegaconf import OmegaConf

    from reinitlab.paths import config_dir
    from reinitlab.training.models import resolve_source

    return resolve_source(OmegaConf.load(config_dir() / "model" / f"{name}.yaml"))


def run_hf_trainer(spec: dict) -> dict:
    """The reference a user would otherwise run: run_glue.py's recipe with the HF Trainer."""
    import numpy as np
    import torch
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, matthews_corrcoef
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from reinitlab.data.glue_io import load_split
    from reinitlab.data.tasks import load_task

    task = load_task(spec["task"])
    static = spec["padding"] == "static"
    path = model_path(spec.get("model", "minilm-l6"))
    tokenizer = AutoTokenizer.from_pretrained(path)

    def dataset(split: str) -> Dataset:
        ex = load_split(task, split, glue_dir())
        cols = {"a": ex.text_a, "label": ex.labels}
        if ex.text_b is not None:
            cols["b"] = ex.text_b
        ds = Dataset.from_dict(cols)
        args = ("a",) if ex.text_b is None else ("a", "b")

        def preprocess(rows):  # run_glue.py's preprocess_function
            return tokenizer(
                *(rows[k] for k in args),
                padding="max_length" if static else False,
                max_length=MAX_LENGTH,
                truncation=True,
            )

        return ds.map(preprocess, batched=True, remove_columns=list(args))

    set_seed(spec["seed"])
    train_set, dev_set = dataset("train"), dataset(task.validation[0].name)
    if spec.get("random_model"):  # e.g. a BERT-base-size BertConfig (bench_gpu.py)
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(**spec["random_model"], num_labels=task.num_labels)
        model = BertForSequenceClassification(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=task.num_labels)
    base = default_data_collator if static else DataCollatorWithPadding(tokenizer)
    meter = StepMeter()

    def collate(features):
        batch = base(features)
        meter.record_batch(batch)
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            meter.step()

    steps = spec["warmup"] + spec["steps"] if spec.get("steps") else -1
    args = TrainingArguments(
        output_dir=spec["workdir"],
        per_device_train_batch_size=RECIPE["batch_size"],
        per_device_eval_batch_size=128,
        learning_rate=RECIPE["lr"],
        weight_decay=RECIPE["weight_decay"],
        warmup_steps=RECIPE["warmup_ratio"],
        max_grad_norm=RECIPE["clip"],
        num_train_epochs=spec.get("epochs", 1),
        max_steps=steps,
        seed=spec["seed"],
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=bool(spec.get("steps")),
        use_cpu=not spec.get("cuda", False),
        bf16=bool(spec.get("bf16", False)),
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=collate,
        processing_class=tokenizer,
        callbacks=[Clock()],
    )
    with RssSampler() as rss:
        trainer.train()
    out = {
        "non_embedding_params": non_embedding_params(model),
        "optimizer": type(trainer.optimizer.optimizer).__name__
        + (" fused" if trainer.optimizer.optimizer.defaults.get("fused") else ""),
        "peak_rss_mb": rss.peak / 2**20,
        "train_rss_mb": (rss.peak - rss.start_rss) / 2**20,
    }
    if spec.get("steps"):
        out.update(meter.window(spec["warmup"], spec["steps"]))
    else:
        trainer.data_collator = base
        pred = trainer.predict(dev_set)
        labels = np.asarray(dev_set["label"])
        if task.is_regression:  # STS-B: Pearson, GLUE's primary metric
            out["dev_metric"] = float(np.corrcoef(pred.predictions.reshape(-1), labels)[0, 1])
        else:
            guess = pred.predictions.argmax(-1)
            out["dev_metric"] = float(
                matthews_corrcoef(labels, guess)
                if task.primary_metric == "mcc"
                else accuracy_score(labels, guess)
            )
        out["train_seconds"] = meter.times[-1] - meter.times[0]
    del torch
    return out


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    if spec.get("cuda"):  # bench_gpu.py: the peak is the GPU's, measured by its caller
        return cuda_worker(spec)
    before = matmul_gflops()
    run = run_reinitlab if spec["kind"] == "reinitlab" else run_hf_trainer
    out = run(spec)
    after = matmul_gflops()  # before and after training: the same contention
    out["matmul_gflops"] = max(before[0], after[0])
    out["matmul_gflops_cpu"] = max(before[1], after[1])
    out["torch_threads"] = torch.get_num_threads()
    if "tokens_per_s" in out:
        flops = 6 * out["non_embedding_params"] * out["tokens_per_s"]
        out["model_gflops"] = flops / 1e9
        out["mfu_vs_matmul"] = flops / 1e9 / out["matmul_gflops"]
        flops_cpu = 6 * out["non_embedding_params"] * out["tokens_per_cpu_s"]
        out["model_gflops_cpu"] = flops_cpu / 1e9
        out["mfu_vs_matmul_cpu"] = flops_cpu / 1e9 / out["matmul_gflops_cpu"]
    return out


def cuda_worker(spec: dict) -> dict:
    """One run on the GPU: the same loops and clocks (StepMeter synchronizes CUDA at each
    step), plus the device and its peak memory; model FLOP/s as in `worker`."""
    import torch

    torch.cuda.reset_peak_memory_stats()
    run = run_reinitlab if spec["kind"] == "reinitlab" else run_hf_trainer
    out = run(spec)
    out["device"] = torch.cuda.get_device_name()
    out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    out["torch_threads"] = torch.get_num_threads()
    if "tokens_per_s" in out:
        out["model_gflops"] = 6 * out["non_embedding_params"] * out["tokens_per_s"] / 1e9
    return out


# ----------------------------------------------------------------------------- parent side


def measure(spec: dict, timeout: int = 3600) -> dict:
    """Run one worker in a fresh process; return its JSON result (raises on failure)."""
    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        spec = {"workdir": tmp, **spec}
        out_file = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec), "--worker-out", str(out_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])},
        )
        if proc.returncode != 0 or not out_file.is_file():
            raise RuntimeError(f"worker {spec['name']} failed:\n{proc.stderr[-4000:]}")
        return json.loads(out_file.read_text())


def sweep_overhead(cache_dir: Path, threads: int, logger: str) -> dict:
    """A two-job multirun (seed=0,1), one train step each, with a fresh tokenization cache:
    process start -> first optimizer step, and each job's own start -> first step."""
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        events = Path(tmp) / "events.jsonl"
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "BENCH_T0": repr(time.time()),
            "BENCH_EVENTS": str(events),
            "BENCH_THREADS": str(threads),
        }
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "_sweep_probe.py"),
                "-m",
                "model=minilm-l6",
                "task=cola",
                "seed=0,1",
                f"logger={logger}",
                f"data.glue_dir={glue_dir()}",
                f"data.cache_dir={cache_dir}",
                "trainer.max_epochs=1",
                "+trainer.limit_train_batches=1",
                "+trainer.limit_val_batches=1",
                "++trainer.enable_progress_bar=false",
                f"hydra.sweep.dir={tmp}/multirun",
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            env=env,
            cwd=tmp,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sweep probe failed:\n{proc.stderr[-4000:]}")
        jobs = [json.loads(line) for line in events.read_text().splitlines()]
    t0 = float(env["BENCH_T0"])
    return {
        "logger": logger,
        "process_start_to_first_step_s": jobs[0]["first_step"] - t0,
        "imports_s": jobs[0]["job_start"] - t0,
        "jobs": [
            {
                "job_start_to_first_step_s": j["first_step"] - j["job_start"],
                "tokenize_or_load_s": j["data_s"],
                "model_load_s": j["model_s"],
                "tokenization_cache_hit": j["cache_hits"],
            }
            for j in jobs
        ],
    }


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    keys = (
        "examples_per_s",
        "examples_per_cpu_s",
        "tokens_per_s",
        "pad_fraction",
        "pad_fraction_computed",
        "step_ms",
        "mfu_vs_matmul",
        "mfu_vs_matmul_cpu",
        "model_gflops",
        "model_gflops_cpu",
        "matmul_gflops",
        "matmul_gflops_cpu",
        "peak_rss_mb",
        "train_rss_mb",
    )
    return {
        name: {k: median(r.get(k) for r in rs) for k in keys}
        | {
            "repeats": len(rs),
            "examples_per_s_all": [round(r["examples_per_s"], 2) for r in rs],
            "examples_per_s_best": max(r["examples_per_s"] for r in rs),
            "steps": rs[0].get("steps"),
        }
        for name, rs in runs.items()
    }


CONFIGS = {
    # name: (kind, task, extra spec)
    # "reinitlab": the defaults (packed batches + fused AdamW; random batches as drawn)
    "reinitlab (cola)": ("reinitlab", "cola", {}),
    "reinitlab, speed-ups off (cola)": (
        "reinitlab",
        "cola",
        {"overrides": ["optim.remove_padding=off", "optim.fused=false"]},
    ),
    "reinitlab, split instead of packed (cola)": (
        "reinitlab",
        "cola",
        {"overrides": ["optim.remove_padding=split"]},
    ),
    "reinitlab, padded batches (cola)": (
        "reinitlab",
        "cola",
        {"overrides": ["optim.remove_padding=off"]},
    ),
    "reinitlab, unfused AdamW (cola)": ("reinitlab", "cola", {"overrides": ["optim.fused=false"]}),
    # opt-in: batches of similar length (changes which examples share a batch)
    "reinitlab, length-grouped batches (cola)": (
        "reinitlab",
        "cola",
        {"overrides": ["data.group_by_length=true"]},
    ),
    # ~10x more tokens per step: fewer timed steps give a window of similar length
    "HF Trainer static pad 128 (cola)": ("hf", "cola", {"padding": "static", "steps_scale": 0.25}),
    "HF Trainer dynamic pad (cola)": ("hf", "cola", {"padding": "dynamic"}),
    "reinitlab (rte)": ("reinitlab", "rte", {}),
    "HF Trainer dynamic pad (rte)": ("hf", "rte", {"padding": "dynamic"}),
}
QUICK_CONFIGS = [
    "reinitlab (cola)",
    "reinitlab, speed-ups off (cola)",
    "HF Trainer static pad 128 (cola)",
    "HF Trainer dynamic pad (cola)",
    "reinitlab (rte)",
    "HF Trainer dynamic pad (rte)",
]
# dev-metric comparison (full mode, or --accuracy; 1 epoch unless --accuracy-epochs): (name, kind, extra spec)
ACCURACY_CONFIGS = (
    ("reinitlab", "reinitlab", {}),
    ("reinitlab, padded batches", "reinitlab", {"overrides": ["optim.remove_padding=off"]}),
    (
        "reinitlab, length-grouped batches",
        "reinitlab",
        {"overrides": ["data.group_by_length=true"]},
    ),
    ("HF Trainer dynamic pad", "hf", {"padding": "dynamic"}),
)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def compute_ratios(summary: dict[str, dict], key: str) -> dict[str, float | None]:
    eps = {n: m[key] for n, m in summary.items()}
    ours = eps.get("reinitlab (cola)")
    ratios = {
        "reinitlab / HF Trainer static pad 128 (target ≥ 1.5)": ratio(
            ours, eps.get("HF Trainer static pad 128 (cola)")
        ),
        "reinitlab / HF Trainer dynamic pad (target ≥ 1.3)": ratio(
            ours, eps.get("HF Trainer dynamic pad (cola)")
        ),
        "reinitlab speed-ups on / off": ratio(ours, eps.get("reinitlab, speed-ups off (cola)")),
    }
    if "reinitlab, padded batches (cola)" in eps:
        ratios["packed / padded batches"] = ratio(ours, eps["reinitlab, padded batches (cola)"])
    if "reinitlab, split instead of packed (cola)" in eps:
        ratios["packed / split batches"] = ratio(
            ours, eps["reinitlab, split instead of packed (cola)"]
        )
    if "reinitlab, unfused AdamW (cola)" in eps:
        ratios["fused AdamW on / off"] = ratio(ours, eps["reinitlab, unfused AdamW (cola)"])
    if "reinitlab, length-grouped batches (cola)" in eps:
        ratios["length-grouped batches (opt-in) / reinitlab"] = ratio(
            eps["reinitlab, length-grouped batches (cola)"], ours
        )
    if "HF Trainer dynamic pad (rte)" in eps:
        ratios["reinitlab / HF Trainer dynamic pad (rte)"] = ratio(
            eps["reinitlab (rte)"], eps["HF Trainer dynamic pad (rte)"]
        )
    return ratios


def fmt(x, spec=".2f"):
    return "–" if x is None else format(x, spec)


def to_markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# bench_speed",
        "",
        f"Mode: {result['mode']}; torch threads: {result['threads']}; {result['measure_steps']} "
        f"timed steps after {result['warmup_steps']} warm-up steps; medians of "
        f"{result['repeats']} interleaved repeats, each in a fresh process. Load average "
        f"(1/5/15 min) before: {result['loadavg_before']}, after: {result['loadavg_after']}. "
        f"Model all-MiniLM-L6-v2, batch 32, lr 2e-5, seed {result['seed']}.",
        "",
        "Two clocks: wall (what you wait; inflated by other processes on a shared machine) and "
        "CPU (process CPU time / torch threads: the work itself, steadier under load). The FLOP "
        "rate is 6 × non-embedding parameters × non-pad tokens per second, as a fraction of an "
        "fp32 2048×2048 matmul timed the same way in the same worker.",
        "",
        "| configuration | examples/s wall (median; best) | examples/CPU-s | timed steps | step ms (wall) | pad fraction (batch; computed) | model GFLOP/s wall; CPU | of matmul peak wall; CPU | matmul GFLOP/s wall; CPU | peak RSS MB (training +MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in s.items():
        lines.append(
            f"| {name} | {fmt(m['examples_per_s'], '.1f')}; {fmt(m['examples_per_s_best'], '.1f')} | "
            f"{fmt(m['examples_per_cpu_s'], '.1f')} | {m['steps']} | {fmt(m['step_ms'], '.0f')} | "
            f"{fmt(m['pad_fraction'])}; {fmt(m.get('pad_fraction_computed'))} | {fmt(m['model_gflops'], '.1f')}; {fmt(m['model_gflops_cpu'], '.1f')} | "
            f"{fmt(m['mfu_vs_matmul'], '.0%')}; {fmt(m['mfu_vs_matmul_cpu'], '.0%')} | "
            f"{fmt(m['matmul_gflops'], '.0f')}; {fmt(m['matmul_gflops_cpu'], '.0f')} | "
            f"{fmt(m['peak_rss_mb'], '.0f')} (+{fmt(m['train_rss_mb'], '.0f')}) |"
        )
    lines += ["", "Ratios of medians from this run (wall clock; CPU time):", ""]
    for name, (wall, cpu) in result["ratios"].items():
        lines.append(f"- {name}: **{fmt(wall)}×** wall; **{fmt(cpu)}×** CPU")
    lines += [
        "",
        "Per-job sweep overhead (2-job multirun, 1 step each, fresh tokenization cache):",
        "",
    ]
    lines += [
        "| logger | process start → first step s | imports s | job | job start → first step s | tokenize/load data s | model load s | cache hit |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for probe in result.get("sweep_overhead", []):
        for i, j in enumerate(probe["jobs"]):
            lines.append(
                f"| {probe['logger']} | {fmt(probe['process_start_to_first_step_s']) if i == 0 else ''} | "
                f"{fmt(probe['imports_s']) if i == 0 else ''} | {i + 1} | "
                f"{fmt(j['job_start_to_first_step_s'])} | {fmt(j['tokenize_or_load_s'])} | "
                f"{fmt(j['model_load_s'])} | {j['tokenization_cache_hit']} |"
            )
    if result.get("accuracy"):
        acc = result["accuracy"]
        epochs = f"{acc['epochs']} epoch{'s' if acc['epochs'] != 1 else ''}"
        lines += [
            "",
            f"Dev metric ({acc['metric']}) after {epochs} of {acc['task']}, per seed:",
            "",
        ]
        lines += [
            "| configuration | "
            + " | ".join(f"seed {s}" for s in result["accuracy"]["seeds"])
            + " | mean | sd |"
        ]
        lines += ["|---|" + "---:|" * (len(result["accuracy"]["seeds"]) + 2)]
        for name, vals in result["accuracy"]["dev_metric"].items():
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            lines.append(
                f"| {name} | "
                + " | ".join(f"{v:.4f}" for v in vals)
                + f" | {statistics.mean(vals):.4f} | {sd:.4f} |"
            )
    else:
        lines += ["", "Dev metric comparison: not run in --quick mode (run without --quick)."]
    lines += [
        "",
        "Weight-delta tracking overhead: measured by bench/bench_deltas.py (results/bench_deltas.md) "
        "when present.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="a few minutes: fewer configs/steps, no accuracy runs"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in every worker (default 1: on a shared machine, CPU time then "
        "measures the work without OpenMP spin-waits)",
    )
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps after warm-up")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="accuracy runs (full mode)"
    )
    p.add_argument("--out", type=Path, default=REPO / "results")
    p.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        help="which configurations (default: by mode)",
    )
    p.add_argument("--no-sweep", action="store_true", help="skip the per-job overhead probe")
    p.add_argument(
        "--accuracy-task",
        default="stsb",
        help="task of the dev-metric comparison (default stsb: one epoch of CoLA leaves MiniLM "
        "near MCC 0 for every trainer, which compares nothing)",
    )
    p.add_argument(
        "--accuracy-epochs",
        type=int,
        default=1,
        help="epochs of each dev-metric run (default 1; the study's recipe is 3)",
    )
    p.add_argument(
        "--accuracy",
        action="store_true",
        help="also run the 1-epoch dev-metric comparison in --quick",
    )
    p.add_argument(
        "--accuracy-only",
        action="store_true",
        help="only the dev-metric comparison: no speed runs, no sweep probe",
    )
    p.add_argument(
        "--accuracy-configs",
        nargs="+",
        choices=[name for name, _, _ in ACCURACY_CONFIGS],
        help="which configurations the dev-metric comparison runs (default: all)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        result = worker(json.loads(args.worker))
        Path(args.worker_out).write_text(json.dumps(result))
        return 0

    if not glue_dir().is_dir():
        print(f"GLUE data not found at {glue_dir()}; set GLUE_DIR", file=sys.stderr)
        return 2
    repeats = args.repeats or (3 if args.quick else 5)
    steps = args.steps or (30 if args.quick else 60)
    names = args.configs or (QUICK_CONFIGS if args.quick else list(CONFIGS))
    if args.accuracy_only:
        names, args.accuracy, args.no_sweep = [], True, True
    load_before = os.getloadavg()
    started = time.time()
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as cache:
        for r in range(repeats):
            for name in names:
                kind, task, extra = CONFIGS[name]
                spec = {
                    "name": name,
                    "kind": kind,
                    "task": task,
                    "seed": args.seed,
                    "threads": args.threads,
                    "warmup": args.warmup,
                    "steps": max(3, round(steps * extra.get("steps_scale", 1))),
                    "cache_dir": cache,
                    **extra,
                }
                out = measure(spec)
                runs[name].append(out)
                print(
                    f"[bench] repeat {r + 1}/{repeats} {name}: {out['examples_per_s']:.1f} ex/s, "
                    f"{out.get('mfu_vs_matmul', 0):.0%} of matmul",
                    flush=True,
                )
        overhead = []
        for logger in () if args.no_sweep else ("none", "wandb"):
            with tempfile.TemporaryDirectory(prefix="bench_sweep_cache_") as fresh:
                overhead.append(sweep_overhead(Path(fresh), args.threads, logger))
                print(f"[bench] sweep overhead ({logger}): {overhead[-1]}", flush=True)
        accuracy = None
        if args.accuracy or not args.quick:
            chosen = [c for c in ACCURACY_CONFIGS if c[0] in (args.accuracy_configs or [c[0]])]
            dev = {name: [] for name, _, _ in chosen}
            for seed in args.seeds:
                for name, kind, extra in chosen:
                    spec = {
                        "name": name,
                        "kind": kind,
                        "task": args.accuracy_task,
                        "seed": seed,
                        "threads": args.threads,
                        "epochs": args.accuracy_epochs,
                        "cache_dir": cache,
                        **extra,
                    }
                    dev[name].append(measure(spec, timeout=7200)["dev_metric"])
                    print(f"[bench] accuracy seed {seed} {name}: {dev[name][-1]:.4f}", flush=True)
            from reinitlab.data.tasks import load_task

            accuracy = {
                "task": args.accuracy_task,
                "metric": load_task(args.accuracy_task).primary_metric,
                "epochs": args.accuracy_epochs,
                "seeds": args.seeds,
                "dev_metric": dev,
            }

    summary = summarize(runs)
    wall, cpu = (
        compute_ratios(summary, "examples_per_s"),
        compute_ratios(summary, "examples_per_cpu_s"),
    )
    ratios = {k: (wall[k], cpu[k]) for k in wall}
    result = {
        "mode": "quick" if args.quick else "full",
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "seed": args.seed,
        "repeats": repeats,
        "warmup_steps": args.warmup,
        "measure_steps": steps,
        "recipe": RECIPE,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.time() - started, 1),
        "summary": summary,
        "ratios": ratios,
        "sweep_overhead": overhead,
        "accuracy": accuracy,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_speed.json").write_text(json.dumps(result, indent=2))
    (args.out / "bench_speed.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
