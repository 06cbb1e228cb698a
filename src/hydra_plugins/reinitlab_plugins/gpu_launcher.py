"""`hydra/launcher=gpus`: run a sweep's jobs in parallel on one machine, one GPU slot per job.

`n = len(gpus) * jobs_per_gpu` jobs run at once, each in a fresh process (spawned, so no CUDA
state is inherited) that first takes a free slot from the machine-wide lock pool
(`reinitlab.sweep.gpu_slots`) and pins CUDA_VISIBLE_DEVICES to it, then runs the Hydra job. Jobs
that finish out of order free their slot when their process exits, crashes included, and the
next job takes it. A process that dies without a result (kill -9, OOM) is reported as a failed
job; the others go on. Each job directory gets `gpu_slot.json` (slot, pid, start and end).
Job processes die with the launcher (a killed sweep leaves no orphan training on), and a job
that finds the disk full stops the launch of the rest.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.reinitlab_plugins.local_launcher import ConfiguredLauncher

log = logging.getLogger(__name__)

SLOT_RECORD = "gpu_slot.json"


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM this process when the launcher dies (kill -9 included), so a
    killed sweep leaves no job running on behind it; the job records itself as killed."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the job's lease still shows it running
        return
    if os.getppid() != parent_pid:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _job_process(
    payload: bytes, result_path: str, gpus: list[str], jobs_per_gpu: int, lock_dir, parent: int
):
    """Body of one job's process: take a slot, pin the GPU, run the job, write its JobReturn."""
    import cloudpickle
    from hydra.core.utils import run_job

    from reinitlab.atomic import write_json_atomic
    from reinitlab.sweep.gpu_slots import acquire_slot, pin_to
    from reinitlab.sweep.ledger import Terminated

    die_with_parent(parent)
    hydra_context, config, task_function, singleton_state = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    slot = acquire_slot(gpus, jobs_per_gpu, lock_dir)  # released by the OS when we exit
    pin_to(slot)
    start = time.time()
    try:
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except (Terminated, KeyboardInterrupt):
        # The job already recorded itself as killed/interrupted and said so in one line; the
        # traceback multiprocessing would print adds nothing (it is in the job's log).
        raise SystemExit(1) from None
    end = time.time()
    out_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg else None
    if out_dir:
        record = {"gpu": slot.gpu, "slot": slot.name, "pid": os.getpid(), "start": start}
        write_json_atomic(Path(out_dir) / SLOT_RECORD, {**record, "end": end})
    if ret.status == JobStatus.FAILED and not _picklable(ret._return_value):
        ret._return_value = RuntimeError(repr(ret._return_value))
    Path(result_path).write_bytes(cloudpickle.dumps(ret))


def _picklable(obj: Any) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001
        return False
    return True


@contextmanager
def stop_with(running: dict[int, tuple[Any, ...]]):
    """When the launcher is killed or interrupted, stop its running job processes (each records
    itself as killed) and wait for them, so the sweep ends with their records written and no
    orphan training left behind."""
    try:
        yield
    except BaseException:
        for proc, *_ in running.values():
            if proc.is_alive():
                proc.terminate()
        for proc, *_ in running.values():
            proc.join(timeout=60)
        raise


class GpuPoolLauncher(ConfiguredLauncher):
    """`len(gpus) * jobs_per_gpu` jobs at once, each in its own process on its own GPU slot."""

    def __init__(
        self, gpus: Sequence[int | str] | None = None, jobs_per_gpu: int = 1, lock_dir=None
    ) -> None:
        super().__init__()
        self.gpus = gpus
        self.jobs_per_gpu = int(jobs_per_gpu)
        self.lock_dir = lock_dir

    def _gpus(self) -> list[str]:
        from reinitlab.errors import ReinitlabError
        from reinitlab.sweep.gpu_slots import visible_gpus

        gpus = [str(g) for g in self.gpus] if self.gpus else visible_gpus()
        if not gpus:
            raise ReinitlabError(
                "hydra/launcher=gpus found no GPU (set hydra.launcher.gpus=[0,1], "
                "CUDA_VISIBLE_DEVICES, or use hydra/launcher=local)"
            )
        return gpus

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        """Keep up to `len(gpus) * jobs_per_gpu` job processes running until every job has ended;
        returns the JobReturns in job order; a full disk in one job leaves the rest unstarted."""
        from reinitlab.sweep.job import signals_recorded

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        gpus = self._gpus()
        width = len(gpus) * self.jobs_per_gpu
        log.info(
            f"Launching {len(job_overrides)} jobs, {width} at a time on GPUs {gpus} "
            f"({self.jobs_per_gpu} per GPU)"
        )
        ctx = mp.get_context("spawn")
        tmp = tempfile.mkdtemp(prefix="reinitlab-gpus-")
        pending = list(enumerate(job_overrides, start=initial_job_idx))
        running: dict[int, tuple[Any, str, DictConfig, Sequence[str]]] = {}
        results: dict[int, JobReturn] = {}
        with signals_recorded(), stop_with(running):
            self._run_pool(ctx, tmp, gpus, width, pending, running, results)
        return [results[i] for i in sorted(results)]

    def _run_pool(self, ctx, tmp, gpus, width, pending, running, results) -> None:
        """Start job processes while slots are free and collect the ones that ended."""
        import cloudpickle

        from reinitlab.sweep.ledger import disk_full

        while pending or running:
            while pending and len(running) < width:
                idx, overrides = pending.pop(0)
                config = self.job_config(idx, overrides)
                payload = cloudpickle.dumps(
                    (self.hydra_context, config, self.task_function, Singleton.get_state())
                )
                result_path = os.path.join(tmp, f"{idx}.pkl")
                proc = ctx.Process(
                    target=_job_process,
                    args=(
                        payload,
                        result_path,
                        gpus,
                        self.jobs_per_gpu,
                        self.lock_dir,
                        os.getpid(),
                    ),
                )
                proc.start()
                running[idx] = (proc, result_path, config, overrides)
            time.sleep(0.05)
            for idx in [i for i, (p, *_) in running.items() if not p.is_alive()]:
                proc, result_path, config, overrides = running.pop(idx)
                proc.join()
                results[idx] = ret = self._collect(proc, result_path, config, overrides)
                if ret.status == JobStatus.FAILED and disk_full(ret._return_value) and pending:
                    log.error(f"disk full: {len(pending)} jobs not started")
                    pending.clear()  # the sweeper stops the sweep with the message

    @staticmethod
    def _collect(proc, result_path: str, config: DictConfig, overrides) -> JobReturn:
        import cloudpickle

        path = Path(result_path)
        if path.is_file():
            ret = cloudpickle.loads(path.read_bytes())
            path.unlink()
            return ret
        ret = JobReturn(
            overrides=list(overrides),
            cfg=OmegaConf.create({}),
            hydra_cfg=config,
            status=JobStatus.FAILED,
        )
        ret.return_value = RuntimeError(
            f"job process {proc.pid} died without a result (exit code {proc.exitcode})"
        )
        return ret
