"""`hydra.sweeper.seeds=adaptive`: the sweep runs in stages, adding seeds only where a variant's
comparison with its cell's baseline is still undecided (the rule: `reinitlab.decide`).

Stage 1 runs `min_seeds` seeds (`seed`, `seed+1`, ...; `seed` from the command, default the
config's) of every variant and of its cell's baseline. After each stage the comparisons are
decided from the ledger's records; the next stage adds the next look's seeds to each undecided
comparison and to its cell's baseline, until every comparison is decided or has `max_seeds`.
A stage is an ordinary plan of jobs through the sweeper (`ReinitlabSweeper.launch_plan`), so
the ledger's plan grows with the stages, every launcher runs them, and re-running the same
command recomputes the same decisions from the same records and continues where the sweep
stopped, never training a job twice. `<sweep dir>/decisions.json` is rewritten after every
stage.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

from reinitlab.decide.rule import Policy
from reinitlab.decide.study import (
    DECISIONS_FILENAME,
    Comparison,
    Decision,
    Result,
    decide,
    family_sizes,
    finished,
    format_decisions,
    schedule,
    seeds_per_job,
)
from reinitlab.errors import ReinitlabError
from reinitlab.sweep.overrides import cell_text, override_key


def is_seed(override: str) -> bool:
    return override_key(override) == "seed"


def policy_of(sweeper: Any) -> Policy:
    """The policy from `hydra.sweeper.adaptive.*` (every option checked, named when wrong)."""
    return Policy.from_options(
        OmegaConf.to_container(OmegaConf.create(sweeper.adaptive), resolve=True)
    )


def check_overrides(overrides: list[Override]) -> None:
    """Adaptive seeds choose the seeds: a swept `seed` is refused, naming the option."""
    for o in overrides:
        if o.get_key_element() == "seed" and o.is_sweep_override():
            raise ReinitlabError(
                f"{o.input_line}: hydra.sweeper.seeds=adaptive chooses the seeds (seed, seed+1, "
                "... up to hydra.sweeper.adaptive.max_seeds); give one first seed (seed=N) or "
                "none, or use hydra.sweeper.seeds=fixed to sweep seeds yourself"
            )


class Study:
    """The study's cells and comparisons (from the command's jobs at the first seed) and the
    jobs each stage needs."""

    def __init__(self, sweeper: Any, overrides: list[Override], policy: Policy) -> None:
        from reinitlab.sweep.overrides import expand

        check_overrides(overrides)
        self.sweeper, self.policy = sweeper, policy
        self.cells = sweeper.plan(expand(overrides))  # variants and the baselines added
        seeds = {j["seed"] for j in self.cells}
        if len(seeds) != 1 or not isinstance(next(iter(seeds)), int):
            raise ReinitlabError(f"adaptive seeds need one integer first seed, got {seeds}")
        self.first_seed = int(next(iter(seeds)))
        self.seeds = schedule(policy, self.first_seed)
        baselines = {cell_text(j["overrides"]) for j in self.cells if j["baseline"]}
        self.comparisons = [
            Comparison(j["task"], cell_text(j["overrides"]), j["variant"])
            for j in self.cells
            if not j["baseline"]
        ]
        lacking = sorted({c.cell for c in self.comparisons} - baselines)
        if lacking:
            raise ReinitlabError(
                "adaptive seeds compare every variant with its cell's baseline, and these "
                f"cells have none: {'; '.join(lacking)}. Leave hydra.sweeper.add_baselines=true"
            )
        if not self.comparisons:
            raise ReinitlabError(
                "adaptive seeds need at least one variant to compare with a baseline (e.g. "
                "'reinit.k=1,4'); this sweep has only baselines"
            )
        self.meta: dict[str, tuple[str, str | None, int]] = {}  # job key -> cell, variant, seed
        self.described: dict[tuple[str, ...], dict[str, Any]] = {}  # overrides -> planned job

    def results(self) -> list[Result]:
        """The primary metric of every completed job of the study, from the ledger."""
        from reinitlab.sweep.ledger import Ledger

        sweep_dir = Path(self.sweeper.config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return []
        out = []
        for job, rec in Ledger(sweep_dir).records():
            if job.key in self.meta:
                cell, variant, seed = self.meta[job.key]
                out.append(Result(cell, variant, seed, rec["final"]["metrics"]["val/primary"]))
        return out

    def plan_stage(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        """Every job the decisions need so far (a schedule prefix per variant and baseline),
        planned through the sweeper; the job keys are remembered for `results`."""
        need = seeds_per_job(decisions)
        jobs = []
        for j in self.cells:
            variant = None if j["baseline"] else j["variant"]
            n = need.get((cell_text(j["overrides"]), variant), 0)
            base = [o for o in j["overrides"] if not is_seed(o)]
            jobs += [[*base, f"seed={s}"] for s in self.seeds[:n]]
        new = [j for j in jobs if tuple(j) not in self.described]
        if new:  # each job composed once per command, however many stages replay
            for p in self.sweeper.plan(new):
                self.described[tuple(p["overrides"])] = p
        planned = [self.described[tuple(j)] for j in jobs]
        for p in planned:
            variant = None if p["baseline"] else p["variant"]
            self.meta[p["job_key"]] = (cell_text(p["overrides"]), variant, int(p["seed"]))
        return planned

    def decide(self) -> list[Decision]:
        return decide(self.comparisons, self.results(), self.policy, self.first_seed)


def write_decisions(sweep_dir: Path, decisions: list[Decision]) -> Path:
    """`<sweep dir>/decisions.json`: one entry per comparison, written atomically."""
    from reinitlab.atomic import write_json_atomic

    return write_json_atomic(sweep_dir / DECISIONS_FILENAME, [d.as_dict() for d in decisions])


def stage_line(decisions: list[Decision], policy: Policy) -> str:
    """The stage the planned jobs complete, per cell: the look of the most seeds any of the
    cell's open comparisons needs. Stages are per cell (a cell whose comparisons were decided
    early stops, and one that lags finishes its stage beside another's next), so a single count
    would name one cell's stage for all; one is said only when every open cell is at the same."""
    looks = policy.looks()
    labels = cell_labels(decisions)
    stage: dict[str, int | None] = dict.fromkeys(labels.values())
    for d in decisions:
        if not finished([d]):
            n = next(i for i, size in enumerate(looks, 1) if size >= d.seeds_needed)
            stage[labels[d.cell]] = max(stage[labels[d.cell]] or 0, n)
    at = f"looks at {', '.join(map(str, looks))} seeds"
    head = f"of at most {len(looks)} ({at})"
    running = {n for n in stage.values() if n is not None}
    if not running:
        return f"every comparison decided or at budget ({at})"
    if len(running) == 1 and None not in stage.values():
        return f"stage {running.pop()} {head}"
    each = ", ".join(
        f"{c} done" if n is None else f"{c} stage {n} ({looks[n - 1]} seeds)"
        for c, n in stage.items()
    )
    return f"stages {head}: {each}"


def cell_labels(decisions: list[Decision]) -> dict[str, str]:
    """A short name per cell for the console: its task where each task has one cell, else the
    cell's overrides."""
    tasks = {d.cell: d.task for d in decisions}
    unique = len(set(tasks.values())) == len(tasks)
    return {cell: task if unique else cell for cell, task in tasks.items()}


def settle(study: Study) -> tuple[list[Decision], list[dict[str, Any]]]:
    """The decisions the records allow and the jobs they need: planning a stage lets the
    records of its jobs be read, which may decide more and need the next stage's, so plan and
    decide alternate until the jobs needed stop changing (on a resumed sweep this replays the
    stages already run, from their records)."""
    decisions = study.decide()
    while True:
        planned = study.plan_stage(decisions)
        again = study.decide()
        if [d.seeds_needed for d in again] == [d.seeds_needed for d in decisions]:
            return again, planned
        decisions = again


def look_widths_lines(policy: Policy, comparisons: list[Comparison]) -> list[str]:
    """What each look can decide, per family size: the interval's half-width in sds of the
    paired differences. Said before a study starts, so that a first stage that cannot decide
    anything (a large family at few seeds) is no surprise."""
    sizes = family_sizes(comparisons, policy.family)
    lines = []
    for m in sorted(set(sizes.values())):
        names = sorted(f for f, k in sizes.items() if k == m)
        who = "the study" if policy.family == "study" else ", ".join(names)
        each = " each" if len(names) > 1 else ""
        widths = [f"{w:.3g}" for w in policy.half_widths(m)]
        looks = policy.looks()
        at = ", ".join(f"{w} at {n}" for w, n in zip(widths[1:], looks[1:], strict=True))
        lines.append(
            f"[reinitlab] {who}: {m} comparison{'s' if m != 1 else ''}{each}, alpha "
            f"{policy.alpha} over all looks; a look decides better/worse only where the "
            f"paired mean difference exceeds {widths[0]} sds of the paired differences at "
            f"{looks[0]} seeds" + (f", {at}" if at else "")
        )
    return lines


def run_adaptive(sweeper: Any, overrides: list[Override]) -> list:
    """Run the study's stages until every comparison is decided or at budget; a dry run prints
    the current decisions and the next stage's jobs."""
    policy = policy_of(sweeper)
    study = Study(sweeper, overrides, policy)
    sweep_dir = Path(sweeper.config.hydra.sweep.dir)
    returns: list = []
    for line in look_widths_lines(policy, study.comparisons):
        print(line, flush=True)
    while True:
        decisions, planned = settle(study)
        sweeper.keys = [p["job_key"] for p in planned]
        print(
            f"[reinitlab] adaptive seeds, {stage_line(decisions, policy)}; decisions so far:",
            flush=True,
        )
        print(format_decisions(decisions), flush=True)
        batches = sweeper.launch_plan(planned)
        if sweeper.dry_run:
            print("[reinitlab] dry run: nothing was launched or written", flush=True)
            return []
        write_decisions(sweep_dir, decisions)
        if not batches:
            break
        stage_returns, failed, total = sweeper.run_batches(batches)
        returns += stage_returns
        if failed:
            write_decisions(sweep_dir, settle(study)[0])
            sweeper.print_summary(sweep_dir)
            sweeper.exit_on_failures(failed, total)
    sweeper.print_summary(sweep_dir)
    if not finished(decisions):
        print(
            "[reinitlab] some comparisons are undecided and their next jobs are running in "
            "another process; run the same command again when they end",
            file=sys.stderr,
            flush=True,
        )
    print(f"[reinitlab] decisions ({sweep_dir / DECISIONS_FILENAME}):", flush=True)
    print(format_decisions(decisions), flush=True)
    return returns
