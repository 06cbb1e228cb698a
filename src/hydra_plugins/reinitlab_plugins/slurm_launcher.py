"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, adjusted for long sweeps.

* It waits for every job and reports each failed one as a failed Hydra job, instead of
  raising at the first failure while the rest of the array is still running.
* Jobs import reinitlab from the same place as the submitting process (a checkout's `src/` is
  put on PYTHONPATH by the job's setup lines), so `python train.py -m ...` works uninstalled.
Preemption/time-out requeueing is submitit's (`checkpoint` below); the job side (checkpoint on
the signal, resume) is `reinitlab.resume`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def _source_root() -> str:
    import reinitlab

    return str(Path(reinitlab.__file__).resolve().parents[1])


class ReinitlabSlurmLauncher(SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        setup = list(self.params.get("setup") or [])
        self.params["setup"] = [f'export PYTHONPATH="{_source_root()}:${{PYTHONPATH:-}}"', *setup]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        import submitit

        captured: list = []
        original = submitit.AutoExecutor.map_array

        def map_array(executor, fn, *iterables):
            jobs = original(executor, fn, *iterables)
            captured.extend(jobs)
            return _Settled(jobs)

        submitit.AutoExecutor.map_array = map_array  # collect the jobs, settle them below
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = original


class _Settled(list):
    """The array's jobs, each turned into a JobReturn once finished (a failed job included)."""

    def __init__(self, jobs: list) -> None:
        super().__init__(_SettledJob(j) for j in jobs)


class _SettledJob:
    def __init__(self, job) -> None:
        self.job = job

    def results(self) -> list[JobReturn]:
        try:
            return self.job.results()
        except Exception as e:  # noqa: BLE001 -- a failed job is reported, not raised here
            log.error("SLURM job %s failed: %s", self.job.job_id, str(e).strip().splitlines()[-1])
            ret = JobReturn(status=JobStatus.FAILED, cfg=OmegaConf.create({}))
            ret.return_value = RuntimeError(
                f"SLURM job {self.job.job_id} failed (state {self.job.state}); see its log "
                f"{self.job.paths.stderr}"
            )
            return [ret]
