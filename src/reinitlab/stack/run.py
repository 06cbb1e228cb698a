"""Train one stack: its members' jobs built by the one job builder, fitted together by one
trainer, each recorded through the ledger into its own job directory.

Per member, everything a solo job has: its reinit (the same draw as solo: built and applied
by the same code with the same seed), its own W&B run, optimizer state and schedule (slices of
the stacked AdamW), gradient clipping, metrics, weight movement and result record (with a
`stacked` field). A member that fails (a build error, a non-finite dev metric) fails alone;
an error of the stack itself, or a kill, fails every member still running, and a re-run of the
sweep trains only the members without a completed result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reinitlab.sweep.job import Claimed, record_failure, signals_recorded

log = logging.getLogger("reinitlab")


@dataclass
class StackMember:
    """One job of a stack: its resolved config and its ledger claim (None outside Hydra)."""

    cfg: DictConfig
    claimed: Claimed | None = None
    job: Any = None  # its built Job once the stack ran: weights, history, logger


def train_stack(
    members: list[StackMember], attention: str = "eager", extra_callbacks: list | tuple = ()
) -> list[Any]:
    """Train `members` as one stack; per member, in order, its result record or the exception
    it failed with. Kills and Ctrl-C are recorded for every unfinished member, then re-raised.
    `extra_callbacks` (Lightning callbacks) join the stack's trainer, e.g. for benchmarks."""
    from reinitlab.job import build_job
    from reinitlab.stack.module import StackedClassifier
    from reinitlab.stack.stacked import StackedModel
    from reinitlab.sweep.jobkey import job_key
    from reinitlab.training.builder import build_trainer

    started = time.time()
    outcomes: list[Any] = [None] * len(members)

    def fail(i: int, error: BaseException) -> None:
        outcomes[i] = error
        claimed = members[i].claimed
        if claimed is not None:
            record_failure(claimed, error)
        else:
            log.error("stack member %d failed: %s", i, error)

    jobs: dict[int, Any] = {}
    try:
        with signals_recorded():
            for i, member in enumerate(members):
                try:
                    data = next(iter(jobs.values())).data if jobs else None
                    jobs[i] = member.job = build_job(member.cfg, stacked=True, data=data)
                except Exception as e:  # noqa: BLE001 -- this member fails alone
                    fail(i, e)
            order = sorted(jobs)
            if not order:
                return outcomes
            first = jobs[order[0]]
            print(
                f"[reinitlab] stack of {len(order)}: {first.spec.task.name} | "
                f"{first.cfg.model.name} | seed {first.cfg.seed} | "
                + ", ".join(jobs[i].spec.label for i in order),
                flush=True,
            )
            for i in order:  # the solo job's reinit, from its own plan and seed
                job = jobs[i]
                job.reinit_cb.on_fit_start(None, job.module)
                if job.delta_cb is not None:
                    job.delta_cb.take_start(job.model)
                job.log_hyperparams()
            stack = StackedModel(
                [jobs[i].model for i in order],
                [jobs[i].plan.masked_heads for i in order],
                attention,
            )
            module = StackedClassifier(
                stack,
                [jobs[i].module for i in order],
                [jobs[i].logger for i in order],
                [jobs[i].delta_cb for i in order],
                on_member_failed=lambda k, e: fail(order[k], e),
            )
            trainer = build_trainer(
                first.cfg.trainer, list(extra_callbacks), None, None, first.resume.plugins()
            )
            trainer.fit(module, datamodule=first.data)
            module.finish_members()
            stacked = {"members": len(order), "attention": attention}
            stacked["jobs"] = [job_key(jobs[i].cfg) for i in order]
            for k, i in enumerate(order):
                if k in module.failed:
                    continue
                try:
                    outcomes[i] = _finish_member(
                        jobs[i], members[i], trainer, started, {**stacked, "index": k}
                    )
                except Exception as e:  # noqa: BLE001 -- e.g. its directory is not writable
                    fail(i, e)
    except BaseException as e:
        for i in range(len(members)):
            if outcomes[i] is None:
                fail(i, e)
        if not isinstance(e, Exception):
            raise
    finally:
        for i, job in jobs.items():
            if job.logger is not None:  # what the trainer does for its own logger at teardown
                job.logger.finalize("success" if isinstance(outcomes[i], dict) else "failed")
            job.close_logger()
    return outcomes


def _finish_member(job, member, trainer, started, stacked: dict) -> dict:
    """Write a member's result record (with `stacked`) and complete its ledger attempt."""
    from reinitlab.training.record import build_record, summary_line, write_result

    record = build_record(job, [], started, trainer)
    # a stack has no preemption callback counting steps: every step ran in this process
    record["steps_this_process"] = int(trainer.global_step)
    record["stacked"] = stacked
    path = write_result(Path(job.cfg.paths.output_dir), record)
    job.resume.finish()
    if member.claimed is not None:
        member.claimed.attempt.complete()
    print(summary_line(record, path), flush=True)
    return record


__all__ = ["StackMember", "train_stack"]
