"""`hydra/launcher=local` (the default): a sweep's jobs one after another in this process.

What Hydra's basic launcher does, written on Hydra's public plugin API (`Launcher`,
`run_job`), so reinitlab depends on no private Hydra module and the sweeper can tell that jobs
run one at a time (it then launches them one by one: a progress line before each, and a
full disk stops the sweep at the first job that hits it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class ConfiguredLauncher(Launcher):
    """A launcher that keeps what Hydra's `setup` hands it (shared by reinitlab's launchers)."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.composer: Any = None  # the sweeper's JobComposer, when a reinitlab sweeper set it

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        """Keep the config, context and task function; jobs are built from them in `launch`."""
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def job_config(self, idx: int, overrides: Sequence[str]) -> DictConfig:
        """Job `idx`'s config: the sweep's, with its overrides, numbered `idx`."""
        assert self.config is not None and self.hydra_context is not None
        log.debug(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        if self.composer is not None:  # the sweep's bases, composed once by the sweeper
            config = self.composer.compose(list(overrides))
        else:
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
        with open_dict(config):
            config.hydra.job.id = idx
            config.hydra.job.num = idx
        return config

    def run_one(self, config: DictConfig, task_function: TaskFunction) -> JobReturn:
        """Run one job's `task_function` through Hydra's `run_job` (its directory, `.hydra/`
        files, logging), then give the console back to the sweep's logging."""
        assert self.config is not None and self.hydra_context is not None
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret


class LocalLauncher(ConfiguredLauncher):
    """Jobs one after another in this process."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Run each job in turn in this process; `initial_job_idx` numbers the first job (Hydra's
        job id/num), so a sweeper launching one job at a time keeps the numbering going."""
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.debug(f"Launching {len(job_overrides)} jobs locally")  # the sweeper says "job i/N"
        return [
            self.run_one(self.job_config(idx, overrides), self.task_function)
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
        ]
