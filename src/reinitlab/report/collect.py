"""Read a study's runs through the sweep ledger (`reinitlab.sweep.ledger`).

A report must never drop a run silently, nor count one twice: every job is one job key,
whatever the number of its attempts or directories, so its counts of completed, failed,
running, missing and corrupt jobs are the ones `reinitlab status` shows. Jobs a sweep planned
but never started come from the ledger's plan (reinitlab's sweeper) or, for sweeps made with
Hydra's basic sweeper, from expanding its `multirun.yaml`. A plan that exists but cannot be
read or expanded is a problem of its own (kind `plan`, with the file and the reason), since the
missing count is then incomplete; only a sweep with no plan file at all has none quietly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import scheme_is_baseline
from reinitlab.sweep.ledger import (
    PLAN_FILENAME,
    RESULT_FILENAME,
    Job,
    Ledger,
    error_line,
    plan_unreadable,
)
from reinitlab.sweep.overrides import cell_text

# Config keys that describe a run's identity elsewhere (scheme, task, model, seeds) or that do
# not change what is measured (paths, logging); the rest, when it varies, splits aggregates.
_NOT_A_FACTOR = (
    "config.seed",
    "config.seeds.",
    "config.reinit.",
    "config.task.",
    "config.model.",
    "config.paths.",
    "config.logger.",
    "config.data.glue_dir",
    "config.data.cache_dir",
    "config.data.num_workers",
    "config.data.max_train_samples",
    "config.experiment",
    "config.study",  # the study's name labels runs, it does not change them
    "config.intermediate",  # the task chain: its own column, `chain`
    "config.probe.",  # probing observes a run, it does not change its training
    "config.trainer.enable_progress_bar",
    "config.trainer.logger",
    "config.trainer.default_root_dir",
)


@dataclass
class Problem:
    """A job the report could not use: `kind` is failed, running, missing or corrupt; or
    `plan`: a sweep plan (`sweep_plan.json`, `multirun.yaml`) that could not be read, so the
    jobs it planned but never started are not counted as missing."""

    kind: str
    where: str
    reason: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Collection:
    """Everything read from the given dirs: completed records (with their paths and overrides),
    the jobs that could not be used, and one summary per input dir."""

    records: list[dict[str, Any]]
    problems: list[Problem]
    sweeps: list[dict[str, Any]]  # per input dir: path, swept params, planned job count


def _one_line(e: Exception) -> str:
    return " ".join(error_line(e).split())  # parser messages span lines; a reason is one


@dataclass
class SweepPlan:
    """What a `multirun.yaml` says: the swept parameters, and every job's overrides as Hydra's
    basic sweeper expands them; `jobs` is None when they cannot be expanded here, and `error`
    says why."""

    swept: dict[str, str]
    jobs: list[list[str]] | None
    error: str | None = None


def planned_jobs(multirun_yaml: Path) -> SweepPlan:
    """The sweep that `multirun_yaml` describes (see `SweepPlan`). Never raises: a file that
    cannot be read, another sweeper plugin, or overrides that do not parse give `jobs=None`
    and the reason, for the report to say that its planned count is unknown."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(multirun_yaml)
        params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        params = {str(k): str(v) for k, v in params.items()}
        task_overrides = [str(x) for x in (OmegaConf.select(cfg, "hydra.overrides.task") or [])]
        sweeper = str(OmegaConf.select(cfg, "hydra.sweeper._target_") or "")
    except Exception as e:
        return SweepPlan({}, None, f"{multirun_yaml} could not be read: {_one_line(e)}")
    swept = dict(params)
    for ov in task_overrides:
        key, _, value = ov.partition("=")
        if "," in value or value.startswith(("range(", "choice(", "glob(")):
            swept[key] = value
    if not sweeper.endswith("BasicSweeper"):
        return SweepPlan(
            swept,
            None,
            f"{multirun_yaml}: the report can expand the jobs of Hydra's basic sweeper only, "
            f"this sweep used {sweeper or 'no named sweeper'}",
        )
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from reinitlab.sweep.overrides import expand

        parsed = OverridesParser.create().parse_overrides(
            [f"{k}={v}" for k, v in params.items()] + task_overrides
        )
        return SweepPlan(swept, expand(parsed))
    except Exception as e:
        return SweepPlan(
            swept, None, f"{multirun_yaml}: its sweep could not be expanded: {_one_line(e)}"
        )


def _problem(job: Job, root: Path) -> Problem:
    where = str(job.dir if job.dir is not None else root)
    if job.state == "missing":
        return Problem("missing", where, "planned but never started", job.overrides)
    if job.state == "running":
        lease = job.lease or {}
        reason = f"still running: pid {lease.get('pid')} on {lease.get('host')}"
        return Problem("running", where, reason, job.overrides)
    if job.state == "corrupt":
        path = str(Path(where) / RESULT_FILENAME)
        reason = (job.error or "unreadable record").removeprefix(f"{path}: ")
        return Problem("corrupt", path, reason, job.overrides)
    reason = job.error or "no result.json and no log file"
    if job.log and (not job.error or "no marker" in job.error):
        reason = job.log  # the job's own log says more than "no marker"
    return Problem("failed", where, f"{job.kind}: {reason}", job.overrides)


def collect(dirs: list[str | Path]) -> Collection:
    """Read every job under `dirs` through the ledger, one per job key across all dirs; planned
    jobs never started (ledger plan or a basic sweeper's multirun.yaml) become `missing`."""
    records: list[dict[str, Any]] = []
    problems: list[Problem] = []
    sweeps: list[dict[str, Any]] = []
    seen_keys: set[str] = set()  # a job reached through two given dirs counts once
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise ReinitlabError(f"report: {str(root)!r} is not a directory")
        ledger = Ledger(root)
        ledger.require_jobs("report")
        jobs = [j for j in ledger.jobs if j.key not in seen_keys]
        seen_keys |= {j.key for j in jobs}
        for job in jobs:
            if job.state != "completed":
                problems.append(_problem(job, root))
                continue
            assert job.record is not None and job.dir is not None
            rec = dict(job.record)
            rec["path"] = str(job.dir / RESULT_FILENAME)
            rec["run_dir"] = str(job.dir)
            rec["sweep_dir"] = str(root)
            rec["overrides"] = job.overrides
            rec["attempts"] = job.attempts
            records.append(rec)
        info: dict[str, Any] = {"dir": str(root), "swept": {}, "planned": ledger.planned}
        multirun_yaml = root / "multirun.yaml"
        sweep = planned_jobs(multirun_yaml) if multirun_yaml.is_file() else None
        if sweep is not None:
            info["swept"] = sweep.swept
        if ledger.plan is None and sweep is not None and sweep.jobs is not None:
            info["planned"] = len(sweep.jobs)
            started = {frozenset(j.overrides) for j in jobs}
            for job_overrides in sweep.jobs:
                if frozenset(job_overrides) not in started:
                    problems.append(
                        Problem("missing", str(root), "planned but never started", job_overrides)
                    )
            if ledger.plan_problem:  # damaged, though multirun.yaml gave the jobs it planned
                problems.append(Problem("plan", str(root / PLAN_FILENAME), ledger.plan_problem))
        elif ledger.plan is None:
            # the ledger's own plan is the better-named problem when both are unreadable
            unread = [(root / PLAN_FILENAME, ledger.plan_error)]
            unread.append((multirun_yaml, sweep.error if sweep is not None else None))
            where, why = next(((w, e) for w, e in unread if e), (None, None))
            if why is not None:
                info["plan_error"] = why
                problems.append(Problem("plan", str(where), plan_unreadable(why)))
        info["job_dirs"] = sum(len(j.dirs) for j in jobs)
        sweeps.append(info)
    return Collection(records, problems, sweeps)


# --- flattening ---------------------------------------------------------------------------


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list | tuple):
        out[prefix] = json.dumps(obj)
    else:
        out[prefix] = obj


def scheme_variant(scheme: dict[str, Any], num_layers: int | None = None) -> str:
    """A run's readable variant: the scheme registry's label (`k=4`, `L12H6 mask`,
    `block 4-6`, `baseline`), the same text `train` gives its runs; a scheme the registry
    does not know keeps its record's label."""
    from reinitlab.reinit import SCHEMES, scheme_label

    name = scheme.get("name")
    params = {k: v for k, v in scheme.items() if k not in ("name", "label")}
    if name in SCHEMES and num_layers is not None:
        try:
            return scheme_label(name, params, int(num_layers))
        except (ReinitlabError, TypeError, ValueError, KeyError):
            pass
    return str(scheme.get("label") or name)


def position_params(name: Any) -> tuple[str, ...]:
    """Parameters that place a run on its figure's axis (k on the layer curve, (layer, head)
    on the heatmap, the block start or permutation on the bar chart); the other parameters
    (mode, parts, pooler, width) split runs into separate figures. The scheme says which."""
    from reinitlab.reinit import SCHEMES

    impl = SCHEMES.get(name)
    return impl.position if impl is not None else ()


def figure_key(scheme: dict[str, Any]) -> str:
    """The readable name of the figure a run is drawn in (`progressive`, `heads mask`,
    `block width 2`): the scheme without its positional parameters, from the registry."""
    from reinitlab.reinit import figure_label

    params = {k: v for k, v in scheme.items() if k not in ("name", "label")}
    return figure_label(str(scheme.get("name")), params)


def _head_position(scheme: dict[str, Any]) -> tuple[Any, Any]:
    """(layer, head), 1-based, for a heads scheme that resets exactly one head."""
    if scheme.get("name") != "heads":
        return None, None
    if scheme.get("layer") is not None and scheme.get("head") is not None:
        layer, head = scheme["layer"], scheme["head"]
        if isinstance(layer, int) and isinstance(head, int):
            return layer, head
    pairs = scheme.get("heads")
    if isinstance(pairs, list) and len(pairs) == 1 and len(pairs[0]) == 2:
        return int(pairs[0][0]), int(pairs[0][1])
    return None, None


def chain_name(rec: dict[str, Any]) -> str:
    """The intermediate tasks a run fine-tuned on before its task ('none' = direct), from the
    record's `intermediate` list (or its config's)."""
    chain = rec.get("intermediate")
    if chain is None:
        chain = (rec.get("config") or {}).get("intermediate")
    if isinstance(chain, str):
        chain = [chain]
    return "→".join(str(t) for t in chain) if chain else "none"


def study_name(rec: dict[str, Any]) -> str | None:
    """The study a run belongs to: its `study` option, else its sweep dir's name (what
    train.py uses as the W&B group)."""
    study = (rec.get("config") or {}).get("study")
    if study:
        return str(study)
    return Path(rec["sweep_dir"]).name if rec.get("sweep_dir") else None


def runs_frame(records: list[dict[str, Any]], metric: str = "auto") -> pd.DataFrame:
    """One row per run: identity, scheme params, seeds, metrics, runtime, flattened config.

    `metric` picks the value compared everywhere (`primary`): `final` (last validation, the
    fixed-epoch recipe), `best` (best validation), or `auto` = best for runs that trained with
    early stopping (trainer=plateau reports its best epoch), else final.

    Long because a row is one flat dict literal of every report column; splitting it would
    scatter the column list.
    """
    if metric not in ("auto", "final", "best"):
        raise ReinitlabError(f"report: --metric={metric!r}; allowed: auto, final, best")
    rows = []
    for rec in records:
        scheme = dict(rec["scheme"])
        num_layers = rec.get("num_layers")
        config = rec.get("config") or {}
        source = metric
        if metric == "auto":
            source = "best" if config.get("early_stopping") and rec.get("best") else "final"
        chosen = rec.get(source) or rec["final"]
        layer, head = _head_position(scheme)
        row: dict[str, Any] = {
            "run_dir": rec.get("run_dir"),
            "sweep_dir": rec.get("sweep_dir"),
            # the job's cell as its sweep names it (the adaptive seed rule's decisions do)
            "sweep_cell": cell_text(rec.get("overrides") or []),
            "task": rec["task"],
            "model": rec["model"],
            "num_layers": num_layers,
            "scheme": scheme.get("name"),
            "label": scheme_variant(scheme, num_layers),
            "variant": scheme_variant(scheme, num_layers),
            "figure": figure_key(scheme),
            "is_baseline": scheme_is_baseline(scheme, num_layers),
            "head_layer": layer,
            "head_index": head,
            "seed": rec["seed"],
            "primary_metric": rec.get("primary_metric"),
            "train_size": rec.get("train_size"),
            "max_train_samples": rec.get("max_train_samples"),
            "metric_source": source,
            "primary": chosen["metrics"]["val/primary"],
            "final_primary": rec["final"]["metrics"]["val/primary"],
            "best_primary": (rec.get("best") or rec["final"])["metrics"]["val/primary"],
            "best_epoch": _one_based((rec.get("best") or {}).get("epoch")),
            "epochs": rec.get("epochs"),
            "steps": rec.get("steps"),
            "wall_time_s": rec.get("wall_time_s"),
            "has_deltas": isinstance(rec.get("deltas"), dict),
        }
        for k, v in scheme.items():
            if k not in ("name", "label"):
                row[f"scheme.{k}"] = json.dumps(v) if isinstance(v, list | dict) else v
        _flatten(rec.get("seeds") or {}, "seeds", row)
        _flatten(rec["final"].get("metrics", {}), "final", row)
        _flatten((rec.get("best") or {}).get("metrics", {}), "best", row)
        row["chain"] = chain_name(rec)
        row["study"] = study_name(rec)
        _flatten(config, "config", row)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if "seeds.subset" not in df:
        df["seeds.subset"] = df["seed"]
    df["size"] = df["max_train_samples"].where(df["max_train_samples"].notna(), "all")
    df["size"] = df["size"].map(lambda v: "all" if v == "all" else str(int(v)))
    df["factors"] = _other_factors(df)
    return df.sort_values(["task", "model", "size", "scheme", "variant", "seed"]).reset_index(
        drop=True
    )


def _one_based(epoch):
    """Records count epochs from 0 (Lightning); the report, like the console, from 1."""
    return None if epoch is None else int(epoch) + 1


def varying_config_columns(df: pd.DataFrame) -> list[str]:
    """Config keys that differ between runs and are not the task/model/scheme/seed/size."""
    cols = []
    for c in df.columns:
        if not c.startswith("config.") or c.startswith(_NOT_A_FACTOR):
            continue
        values = df[c].map(str)
        if values.nunique(dropna=False) <= 1:
            continue
        if "run_dir" in df and all(
            rd and str(rd) in v for v, rd in zip(values, df["run_dir"], strict=True)
        ):
            continue  # a per-job path (output dir of this run), not an experimental factor
        cols.append(c)
    return cols


def _other_factors(df: pd.DataFrame) -> pd.Series:
    cols = varying_config_columns(df)
    if not cols:
        return pd.Series([""] * len(df), index=df.index)
    return (
        df[cols]
        .map(str)
        .apply(lambda r: " ".join(f"{c.removeprefix('config.')}={v}" for c, v in r.items()), axis=1)
    )
