"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, adjusted for long sweeps.

* It waits for every job and reports each failed one as a failed Hydra job, instead of
  raising at the first failure while the rest of the array is still running.
* Jobs import reinitlab from the same place as the submitting process (a checkout's `src/` is
  put on PYTHONPATH by the job's setup lines), so `python train.py -m ...` works uninstalled.
* Jobs are not composed again on the nodes: when a reinitlab sweeper hands it its composer,
  each job's config is built in the submitting process (from the sweep's bases, composed once)
  and travels in the job's pickle, where upstream composes it from scratch in every array task.
Preemption/time-out requeueing is submitit's (`checkpoint` below); the job side (checkpoint on
the signal, resume) is `reinitlab.training.resume`.
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
    """Submitit's SLURM launcher that waits for the whole array and imports this reinitlab in
    the jobs (its source root is prepended to PYTHONPATH in the job's setup lines)."""

    def __init__(self, jobs_per_task: int = 1, **params: Any) -> None:
        from reinitlab.errors import ReinitlabError

        super().__init__(**params)
        if (
            isinstance(jobs_per_task, bool)
            or not isinstance(jobs_per_task, int)
            or jobs_per_task < 1
        ):
            raise ReinitlabError(
                f"hydra.launcher.jobs_per_task={jobs_per_task!r}: allowed: an integer >= 1 "
                "(sweep jobs one array task runs in turn)"
            )
        self.jobs_per_task = jobs_per_task
        self.composer: Any = None  # the sweeper's JobComposer, when a reinitlab sweeper set it
        setup = list(self.params.get("setup") or [])
        self.params["setup"] = [f'export PYTHONPATH="{_source_root()}:${{PYTHONPATH:-}}"', *setup]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        """Submit the jobs as one array and wait for all of them; each failed one becomes a
        failed JobReturn. (Upstream's `launch` raises at the first failed job's result, and it
        cannot be told otherwise: this is its body with the settling step changed.)"""
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        assert self.config is not None and len(job_overrides) > 0
        params = dict(self.params)
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            **{f"{self._EXECUTOR}_max_num_timeout": params["max_num_timeout"]},
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in base else f"{self._EXECUTOR}_{k}": v
                for k, v in params.items()
                if k not in init_keys
            }
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            composed = None if self.composer is None else self.composer.compose(list(overrides))
            job_params.append(
                (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                 Singleton.get_state(), composed)
            )  # fmt: skip
        if self.jobs_per_task == 1:
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
            return [settle(job) for job in jobs]
        n = self.jobs_per_task
        groups = [job_params[i : i + n] for i in range(0, len(job_params), n)]
        log.info(f"{len(job_params)} jobs in {len(groups)} array tasks of up to {n}")
        tasks = executor.map_array(TaskGroup(self), groups)
        return [ret for task, group in zip(tasks, groups, strict=True)
                for ret in settle(task, len(group))]  # fmt: skip

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict,
        composed: Any = None,
    ) -> JobReturn:
        """One job, on the node: upstream's body, with the config composed at submission when
        there is one (else composed here, as upstream does)."""
        if composed is None:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import run_job, setup_globals
        from omegaconf import open_dict, read_write

        assert self.hydra_context is not None and self.task_function is not None
        Singleton.set_state(singleton_state)
        setup_globals()
        # a requeued task (preemption, time-out) gets the config its first attempt ran, which
        # Hydra's run_job left read-only
        with read_write(composed.hydra), open_dict(composed.hydra.job):
            composed.hydra.job.id = submitit.JobEnvironment().job_id
            composed.hydra.job.num = job_num
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=composed,
            job_dir_key=job_dir_key,
            job_subdir_key="hydra.sweep.subdir",
        )

    def __getstate__(self) -> dict:
        """What travels to the nodes: not the composer (its bases are the submitter's cache;
        every job's config travels composed)."""
        return {**self.__dict__, "composer": None}


class TaskGroup:
    """One array task's body when it runs several sweep jobs: each in turn, through the
    launcher's own per-job call (its config, `run_job`, its ledger claim). A requeued task
    (preemption, time-out) runs its group again: completed jobs are skipped by the ledger and
    the interrupted one resumes from its checkpoint."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __call__(self, group: list[tuple]) -> list[JobReturn]:
        return [self.launcher(*params) for params in group]

    def checkpoint(self, group: list[tuple]) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, group)


def settle(job, size: int | None = None) -> JobReturn | list[JobReturn]:
    """The job's JobReturn once it has finished (a task of `size` jobs: their JobReturns); a
    failed task (killed, cancelled, crashed) is reported as failed Hydra jobs, not raised while
    the rest of the array still runs."""
    try:
        return job.results()[0]
    except Exception as e:  # noqa: BLE001 -- a failed job is reported, not raised here
        log.error("SLURM job %s failed: %s", job.job_id, str(e).strip().splitlines()[-1])
        rets = []
        for _ in range(size or 1):
            ret = JobReturn(status=JobStatus.FAILED, cfg=OmegaConf.create({}))
            ret.return_value = RuntimeError(
                f"SLURM job {job.job_id} failed (state {job.state}); see its log {job.paths.stderr}"
            )
            rets.append(ret)
        return rets if size is not None else rets[0]
