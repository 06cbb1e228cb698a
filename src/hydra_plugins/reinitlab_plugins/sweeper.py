"""`hydra/sweeper=reinitlab` (the default): Hydra's basic sweeper, plus the study's baselines.

A reinit study is meaningless without its baseline, and `reinit.k=range(1,13)` on a 12-layer
model leaves it out. For every group of jobs whose configs are identical except for `reinit`
(so: the same task, model, seed, training-set size, and anything else swept), this sweeper
adds one `reinit=none` job unless the group already has a baseline (`reinit=none`, or
`progressive` with k=null or k=L+1). It never adds a job whose config is already in the sweep,
and drops exact duplicates. The plan (every job's overrides and identity) is merged into
`<sweep dir>/sweep_plan.json`, which `reinitlab status` uses to count missing jobs.

With `skip_completed` (default), jobs whose identity already has a completed result under
the sweep directory are not launched at all (no SLURM job for them); the rest are numbered
from 0 again. Each job also checks for itself (`reinitlab.jobstate`), e.g. a requeued one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PLAN_FILENAME = "sweep_plan.json"


def is_reinit_override(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key == "reinit" or key.startswith("reinit.") or key.startswith("reinit@")


def baseline_overrides(overrides: list[str]) -> list[str]:
    """The job's overrides with every reinit choice replaced by the untouched model."""
    return [o for o in overrides if not is_reinit_override(o)] + ["reinit=none"]


class _LayerCounts:
    """Layer counts per model config, looked up once (None when unknown, e.g. hub offline)."""

    def __init__(self) -> None:
        self.cache: dict[str, int | None] = {}

    def __call__(self, model_cfg: DictConfig) -> int | None:
        name = str(model_cfg.get("name"))
        if name not in self.cache:
            try:
                if model_cfg.get("source") == "random":
                    self.cache[name] = int(model_cfg.config.num_hidden_layers)
                else:
                    from reinitlab.models import load_config

                    self.cache[name] = int(load_config(model_cfg).num_hidden_layers)
            except Exception as e:  # noqa: BLE001 -- unknown layer count only narrows the check
                log.warning("layer count of model %s unknown (%s)", name, e)
                self.cache[name] = None
        return self.cache[name]


def is_baseline(reinit: DictConfig, num_layers: int | None) -> bool:
    """Whether the scheme selects nothing: `none`, progressive k=null/L+1, and any scheme left at
    its defaults (e.g. the presets' own `block`/`heads`/`permute` baselines)."""
    name = reinit.get("name")
    if name == "none":
        return not reinit.get("pooler", False)
    if num_layers is not None:
        from reinitlab.errors import ReinitlabError
        from reinitlab.reinit import resolve_scheme

        try:
            return resolve_scheme(
                OmegaConf.to_container(reinit, resolve=True), num_layers
            ).is_baseline
        except ReinitlabError:
            return False  # an invalid scheme: its job fails with the message; not a baseline
    if name == "progressive":
        return reinit.get("k") is None and not reinit.get("pooler", False)
    return False


class ReinitlabSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        add_baselines: bool = True,
        skip_completed: bool = True,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.add_baselines = add_baselines
        self.skip_completed = skip_completed
        self._layers = _LayerCounts()

    def _describe(self, overrides: list[str]) -> dict[str, Any]:
        from reinitlab.jobkey import config_hash, identity_config

        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        return {
            "overrides": list(overrides),
            "job_key": config_hash(identity_config(cfg)),
            "group": config_hash(identity_config(cfg, drop=("reinit",))),
            "baseline": is_baseline(cfg.reinit, self._layers(cfg.model)),
        }

    def plan(self, jobs: list[list[str]]) -> list[dict[str, Any]]:
        """The jobs to run: the user's (exact duplicates dropped) then the missing baselines."""
        planned: list[dict[str, Any]] = []
        seen: set[str] = set()
        for overrides in jobs:
            job = self._describe(overrides)
            if job["job_key"] not in seen:
                seen.add(job["job_key"])
                planned.append({**job, "baseline_added": False})
        if self.add_baselines:
            covered = {j["group"] for j in planned if j["baseline"]}
            for job in list(planned):
                if job["group"] in covered:
                    continue
                base = self._describe(baseline_overrides(job["overrides"]))
                covered.add(job["group"])
                if base["job_key"] not in seen:
                    seen.add(base["job_key"])
                    planned.append({**base, "baseline_added": True})
        return planned

    def write_plan(self, planned: list[dict[str, Any]]) -> Path:
        """Merge this run's plan into the sweep directory's (a re-run keeps earlier jobs)."""
        import json

        from reinitlab.atomic import write_json_atomic

        assert self.config is not None
        path = Path(self.config.hydra.sweep.dir) / PLAN_FILENAME
        jobs: dict[str, dict] = {}
        if path.is_file():
            jobs = {j["job_key"]: j for j in json.loads(path.read_text())["jobs"]}
        for j in planned:
            jobs[j["job_key"]] = {
                "overrides": j["overrides"],
                "job_key": j["job_key"],
                "baseline_added": j["baseline_added"],
            }
        return write_json_atomic(path, {"jobs": list(jobs.values())})

    def validate_batch_is_legal(self, batch) -> None:
        """Every job's config was already composed (and so validated) by `plan`."""

    def completed_keys(self) -> set[str]:
        """Identities with a completed result anywhere under the sweep directory."""
        from reinitlab.jobstate import completed_records

        assert self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return set()
        return {rec.get("job_key") for _, rec in completed_records(sweep_dir)}

    def split_arguments(self, overrides, max_batch_size):  # type: ignore[override]
        (jobs,) = BasicSweeper.split_arguments(overrides, None)
        planned = self.plan(jobs)
        added = sum(j["baseline_added"] for j in planned)
        self.write_plan(planned)
        to_run = planned
        if self.skip_completed:
            done = self.completed_keys()
            to_run = [j for j in planned if j["job_key"] not in done]
        log.info(
            "reinitlab sweeper: %d jobs (%d baseline jobs added); %d already completed in this "
            "sweep dir are skipped, %d to run",
            len(planned),
            added,
            len(planned) - len(to_run),
            len(to_run),
        )
        return list(
            BasicSweeper.split_overrides_to_chunks([j["overrides"] for j in to_run], max_batch_size)
        )
