"""`hydra/launcher=stacked`: a sweep's jobs that differ only in `reinit` trained together.

The jobs of one (task, model, seed, data, recipe) cell see the same batches, so they train as
one stack in this process (`reinitlab.stack`): their weights stacked, one forward and backward
for all. Jobs that cannot share a stack (`reinitlab.stack.plan.why_solo`) run one after
another as `hydra/launcher=local` runs them. Every member still goes through Hydra's
`run_job` -- its directory, `.hydra/` files and ledger claim are a solo job's -- and gets its own
JobReturn, so the sweeper's summary, re-runs and `reinitlab status` see ordinary jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.reinitlab_plugins.local_launcher import ConfiguredLauncher

log = logging.getLogger(__name__)


def _claim_member(cfg: DictConfig) -> Any:
    """Task function of a stack member's `run_job`: resolve its config while its Hydra job is
    current (its output dir), claim it in the ledger; the stack trains it afterwards."""
    from reinitlab.stack.run import StackMember
    from reinitlab.sweep.job import claim_current
    from reinitlab.sweep.ledger import Skip
    from reinitlab.training.console import quiet_console

    quiet_console(verbose=bool(cfg.get("verbose")))
    OmegaConf.resolve(cfg)
    claimed = claim_current(cfg)
    if isinstance(claimed, Skip):
        return claimed
    return StackMember(cfg, claimed)


class StackedLauncher(ConfiguredLauncher):
    """Stacks of jobs in this process; see the module docstring and `StackedLauncherConf`."""

    def __init__(
        self, members: int = 8, attention: str = "eager", memory_gb: float | None = None
    ) -> None:
        super().__init__()
        from reinitlab.errors import ReinitlabError
        from reinitlab.stack.stacked import STACK_ATTENTION

        if int(members) < 1:
            raise ReinitlabError(f"hydra.launcher.members={members}: must be at least 1")
        if attention not in STACK_ATTENTION:
            raise ReinitlabError(
                f"hydra.launcher.attention={attention!r}; allowed: {', '.join(STACK_ATTENTION)}"
            )
        if memory_gb is not None and float(memory_gb) <= 0:
            raise ReinitlabError(f"hydra.launcher.memory_gb={memory_gb}: must be positive")
        self.members = int(members)
        self.attention = attention
        self.memory_gb = memory_gb

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Plan the stacks, then run each stack and each solo job; JobReturns in job order."""
        from reinitlab.stack.plan import describe, memory_budget, plan_stacks
        from reinitlab.training.module import accelerator_type

        setup_globals()
        assert self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [
            self.job_config(idx, overrides)
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
        ]
        if not configs:
            return []
        trainer = configs[0].get("trainer") or {}
        device = accelerator_type(trainer.get("accelerator", "auto"))
        plan = plan_stacks(configs, self.members, lambda: memory_budget(self.memory_gb, device))
        labels = [" ".join(c.hydra.overrides.task) or "(defaults)" for c in configs]
        print(describe(plan, labels), flush=True)
        returns: dict[int, JobReturn] = {}
        for n, stack in enumerate(plan.stacks, start=1):
            print(f"[reinitlab] stack {n}/{len(plan.stacks)}: {len(stack)} jobs", flush=True)
            returns.update(self._launch_stack(stack, configs))
        for i in sorted(plan.solo):
            returns[i] = self.run_one(configs[i], self.task_function)
        return [returns[i] for i in range(len(configs))]

    def _launch_stack(self, stack: list[int], configs: list[DictConfig]) -> dict[int, JobReturn]:
        from reinitlab.stack.run import StackMember, train_stack
        from reinitlab.sweep.ledger import Skip

        prepared = {i: self.run_one(configs[i], _claim_member) for i in stack}
        returns: dict[int, JobReturn] = {}
        members: list[tuple[int, StackMember]] = []
        for i, ret in prepared.items():
            returns[i] = ret
            if ret.status != JobStatus.COMPLETED:
                continue  # its claim failed (e.g. an unwritable directory): Hydra's own error
            value = ret._return_value
            if isinstance(value, Skip):
                record = value.job.record if value.reason == "completed" else None
                ret._return_value = None if record is None else _primary(record)
            else:
                members.append((i, value))
        if not members:
            return returns
        from reinitlab.training.console import quiet_console

        quiet_console(verbose=bool(members[0][1].cfg.get("verbose")))  # after Hydra's set-up
        outcomes = train_stack([m for _, m in members], self.attention)
        for (i, _), outcome in zip(members, outcomes, strict=True):
            ret = returns[i]
            if isinstance(outcome, BaseException):
                ret.status, ret._return_value = JobStatus.FAILED, outcome
            else:
                ret._return_value = _primary(outcome)
        return returns


def _primary(record: dict) -> float:
    """A job's return value, as the entry point returns it: its best `val/primary`."""
    return record["best"]["metrics"]["val/primary"]
