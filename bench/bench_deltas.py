"""What the weight-delta tracking (reinitlab.deltas.callback.DeltaTracker) costs a training job.

    python bench/bench_deltas.py [--quick] [--repeats R] [--out results]

The tracker does nothing during training steps; it costs two snapshots (pretrained, fit start,
plus the fit-start CKA features) and one measurement per validation and at fit end. So, on one
model, in one process, interleaved and repeated (medians):

* `step_s`: one training step (forward, backward, AdamW step) on a batch of `batch` x `seq`;
* `snapshot_s`: building the tracker + its fit-start snapshot and CKA features;
* `measure_s`: one full measurement (`DeltaTracker.compute`: layer and head movement from
  fit start and from pretrained, CKA on the 64-example dev batch).

and the overhead at the study's default schedule (CoLA: 8551 examples, batch 32 -> 268 steps
per epoch, 3 epochs, one validation per epoch, measurement also at fit end):

    overhead = (snapshot_s + (epochs + 1) * measure_s) / (epochs * steps_per_epoch * step_s)

with steps/s with the tracker off (1 / step_s) and on (total steps / (training + tracker)).
Models: all-MiniLM-L6-v2 (offline) and a randomly initialised BERT-base-size BertConfig
(12 layers, hidden 768, 12 heads: the speed of its weights does not depend on their values).
Synthetic token ids of CoLA-like length; `--quick` uses fewer repeats.

Writes <out>/bench_deltas.json and <out>/bench_deltas.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SCHEDULE = {"train_examples": 8551, "batch": 32, "epochs": 3}  # CoLA, the study's recipe
CKA_BATCH = 64


def build_model(name: str):
    from transformers import BertConfig, BertForSequenceClassification

    if name == "minilm-l6":
        from hydra import compose, initialize_config_dir

        from reinitlab.data.tasks import TaskSpec
        from reinitlab.paths import config_dir
        from reinitlab.training.models import load_model

        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=["model=minilm-l6", "task=cola"])
        return load_model(cfg.model, TaskSpec.from_config(cfg.task), head_seed=0)
    return BertForSequenceClassification(BertConfig(num_labels=2))  # BERT-base size


def batch_of(model, n: int, seq: int, gen) -> dict:
    import torch

    ids = torch.randint(1000, model.config.vocab_size, (n, seq), generator=gen)
    ids[:, 0] = 101
    mask = torch.ones(n, seq, dtype=torch.long)
    mask[n // 2 :, seq * 2 // 3 :] = 0  # half the batch padded, as dynamic padding leaves it
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "labels": torch.randint(0, 2, (n,), generator=gen),
    }


def measure_model(
    name: str, repeats: int, seq: int, steps_per_repeat: int, device: str = "cpu"
) -> dict:
    import torch

    from reinitlab.deltas.callback import DeltaTracker

    if device != "cpu":  # fast steps: time more of them
        steps_per_repeat = max(steps_per_repeat, 20)
    gen = torch.Generator().manual_seed(0)
    model = build_model(name).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    train_batch = {k: v.to(device) for k, v in batch_of(model, SCHEDULE["batch"], seq, gen).items()}
    cka_loader = [batch_of(model, CKA_BATCH, seq, gen)]  # moved to the model's device by it

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def train_step():
        loss = model(**train_batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    train_step()  # warm-up (allocations, AdamW state)
    step_s, snapshot_s, measure_s = [], [], []
    tracker = None
    for _ in range(repeats):  # interleaved, so machine load hits all three alike
        t = time.perf_counter()
        for _ in range(steps_per_repeat):
            train_step()
        step_s.append((time.perf_counter() - t) / steps_per_repeat)
        t = time.perf_counter()
        tracker = DeltaTracker(model, cka_loader)
        tracker.on_fit_start(None, SimpleNamespace(model=model))
        snapshot_s.append(time.perf_counter() - t)
        train_step()  # so the measurement sees moved weights
        t = time.perf_counter()
        result = tracker.compute(model)
        measure_s.append(time.perf_counter() - t)
    assert min(result["layer"]["all"]) > 0  # it measured real movement
    steps_per_epoch = -(-SCHEDULE["train_examples"] // SCHEDULE["batch"])
    epochs = SCHEDULE["epochs"]
    step, snap, meas = (statistics.median(x) for x in (step_s, snapshot_s, measure_s))
    train_total = epochs * steps_per_epoch * step
    tracker_total = snap + (epochs + 1) * meas
    total_steps = epochs * steps_per_epoch
    return {
        "model": name,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "layers": model.config.num_hidden_layers,
        "heads": model.config.num_attention_heads,
        "batch": SCHEDULE["batch"],
        "seq": seq,
        "repeats": repeats,
        "step_s": step,
        "snapshot_s": snap,
        "measure_s": meas,
        "steps_per_s_off": 1 / step,
        "steps_per_s_on": total_steps / (train_total + tracker_total),
        "overhead_pct": 100 * tracker_total / train_total,
        "raw": {"step_s": step_s, "snapshot_s": snapshot_s, "measure_s": measure_s},
    }


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_deltas.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Weight-delta tracking overhead",
        "",
        f"torch threads {results['threads']}, {results['device']}; schedule: CoLA "
        f"({SCHEDULE['train_examples']} examples), batch {SCHEDULE['batch']}, "
        f"{SCHEDULE['epochs']} epochs, one validation per epoch. Medians of repeats.",
        "",
        "| model | params (M) | step (s) | snapshot (s) | measure (s) | steps/s off "
        "| steps/s on | overhead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["models"]:
        lines.append(
            f"| {r['model']} | {r['params_m']} | {r['step_s']:.3f} | {r['snapshot_s']:.3f} "
            f"| {r['measure_s']:.3f} | {r['steps_per_s_off']:.3f} | {r['steps_per_s_on']:.3f} "
            f"| {r['overhead_pct']:.3f}% |"
        )
    (out / "bench_deltas.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seq", type=int, default=48, help="padded batch width (CoLA-like)")
    parser.add_argument("--models", default="minilm-l6,bert-base-random")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--out", type=Path, default=REPO / "results")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    steps = 2 if args.quick else 5
    results = {
        "threads": torch.get_num_threads(),
        "device": args.device
        if args.device == "cpu"
        else torch.cuda.get_device_name(torch.device(args.device)),
        "schedule": SCHEDULE,
        "models": [
            measure_model(m, repeats, args.seq, steps, args.device)
            for m in args.models.split(",")
            if m
        ],
    }
    write(results, args.out)
    print((args.out / "bench_deltas.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
