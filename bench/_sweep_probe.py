"""Helper of bench_speed.py and bench_gpu.py (not a benchmark itself): reinitlab's Hydra app,
unchanged, plus timestamps. For each job it appends to $BENCH_EVENTS one JSON line: when the
job started, when its first optimizer step ended and when it ended, how long data setup and
model loading took, whether the tokenized splits came from the cache, and on a GPU the job's
peak GPU memory. $BENCH_T0 is the parent's clock just before it started this process, so
imports count toward the first job's overhead.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import hydra  # noqa: E402
import lightning as L  # noqa: E402

import reinitlab.data.datamodule  # noqa: E402
import reinitlab.training.models  # noqa: E402
from reinitlab.paths import config_dir  # noqa: E402
from reinitlab.train import train  # noqa: E402
from reinitlab.training.console import route_lightning_logs_to_hydra  # noqa: E402

IMPORTED = time.time()
timings: dict = {}


def timed(owner, name: str, key: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)


timed(reinitlab.training.models, "load_model", "model_s")
timed(reinitlab.data.datamodule.GlueDataModule, "setup", "data_s")


class FirstStep(L.Callback):
    def __init__(self, job_start: float):
        self.event = {"job_start": job_start}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if "first_step" not in self.event:
            self.event["first_step"] = time.time()
            self.event["cache_hits"] = dict(trainer.datamodule.cache_hits)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def probe(cfg) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    timings.clear()
    cb = FirstStep(time.time())
    route_lightning_logs_to_hydra()
    train(cfg, extra_callbacks=[cb])
    event = {**cb.event, **timings, "imported": IMPORTED, "job_end": time.time()}
    if torch.cuda.is_initialized():  # bench_gpu.py's sweeps: this job's peak GPU memory
        event["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        event["cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        event["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    with open(os.environ["BENCH_EVENTS"], "a") as f:
        f.write(json.dumps(event) + "\n")


if __name__ == "__main__":
    probe()
