"""A machine-wide pool of GPU slots held with file locks, so parallel jobs never share a GPU.

A slot is (GPU index, packing index < jobs_per_gpu). A job takes a free slot by `flock`-ing
its lock file; the OS drops the lock when the process exits however it exits (crash, kill -9,
OOM), so a dead job can never hold a GPU. Lock files live in one directory per machine
(`REINITLAB_GPU_LOCK_DIR`, default /tmp/reinitlab-gpu-locks), so two sweeps started on the same
box share the pool too. The job must set CUDA_VISIBLE_DEVICES before torch initialises CUDA:
the `gpus` launcher takes the slot in a fresh process before the job's code runs.

`REINITLAB_FAKE_GPUS=0,1,2` stands in for the visible GPUs on a machine without any (tests).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from reinitlab.errors import ReinitlabError

FAKE_GPUS_ENV = "REINITLAB_FAKE_GPUS"
LOCK_DIR_ENV = "REINITLAB_GPU_LOCK_DIR"
SLOT_ENV = "REINITLAB_GPU_SLOT"


def visible_gpus() -> list[str]:
    """GPU indices jobs may use: the fake list, else CUDA_VISIBLE_DEVICES, else all GPUs."""
    for env in (FAKE_GPUS_ENV, "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(env)
        if value is not None and value.strip():
            return [g.strip() for g in value.split(",") if g.strip()]
    import torch  # device_count() asks NVML; it does not initialise CUDA in this process

    return [str(i) for i in range(torch.cuda.device_count())]


def slot_names(gpus: list[str], jobs_per_gpu: int) -> list[tuple[str, int]]:
    """Slots in the order they are tried: every GPU's first slot, then every GPU's second..."""
    if jobs_per_gpu < 1:
        raise ReinitlabError(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu}; must be >= 1")
    return [(g, j) for j in range(jobs_per_gpu) for g in gpus]


def default_lock_dir() -> Path:
    """The machine-wide pool directory: $REINITLAB_GPU_LOCK_DIR, else /tmp/reinitlab-gpu-locks."""
    return Path(os.environ.get(LOCK_DIR_ENV) or "/tmp/reinitlab-gpu-locks")


@dataclass
class Slot:
    """A held slot: its GPU, its packing index and the open (flock'ed) lock file."""

    gpu: str
    index: int
    fd: int

    @property
    def name(self) -> str:
        """`gpu:index`, as written to gpu_slot.json."""
        return f"{self.gpu}:{self.index}"


def acquire_slot(
    gpus: list[str],
    jobs_per_gpu: int,
    lock_dir: Path | None = None,
    poll_s: float = 0.2,
    timeout_s: float | None = None,
) -> Slot:
    """Block until a slot is free and hold it (for the life of this process, or `release`)."""
    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        for gpu, index in slot_names(gpus, jobs_per_gpu):
            fd = os.open(lock_dir / f"gpu{gpu}.slot{index}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return Slot(gpu, index, fd)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU slot in {lock_dir} after {timeout_s}s")
        time.sleep(poll_s)


def release(slot: Slot) -> None:
    """Free the slot before the process ends (a test or a long-lived worker)."""
    fcntl.flock(slot.fd, fcntl.LOCK_UN)
    os.close(slot.fd)


def pin_to(slot: Slot) -> None:
    """Make the slot's GPU the only one this process (and torch, once it starts CUDA) sees."""
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
    os.environ[SLOT_ENV] = slot.name
