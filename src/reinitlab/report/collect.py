"""Read a study's runs through the sweep ledger (`reinitlab.sweep.ledger`).

A report must never drop a run silently, nor count one twice: every job is one job key,
whatever the number of its attempts or directories, so its counts of completed, failed,
running, missing and corrupt jobs are the ones `reinitlab status` shows. Jobs a sweep planned
but never started come from the ledger's plan (reinitlab's sweeper) or, for sweeps made with
Hydra's basic sweeper, from expanding its `multirun.yaml`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reinitlab.errors import ReinitlabError
from reinitlab.sweep.ledger import PLAN_FILENAME, RESULT_FILENAME, Job, Ledger

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
    """A job the report could not use: `kind` is failed, running, missing or corrupt."""

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


def planned_jobs(multirun_yaml: Path) -> tuple[dict[str, str], list[list[str]] | None]:
    """(swept parameters, every job's overrides as Hydra's basic sweeper expands them).

    The job list is None when the sweep cannot be expanded here (another sweeper plugin,
    glob() over config groups); the report then says the planned count is unknown.
    """
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(multirun_yaml)
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    params = {str(k): str(v) for k, v in params.items()}
    task_overrides = [str(x) for x in (OmegaConf.select(cfg, "hydra.overrides.task") or [])]
    swept = dict(params)
    for ov in task_overrides:
        key, _, value = ov.partition("=")
        if "," in value or value.startswith(("range(", "choice(", "glob(")):
            swept[key] = value
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from hydra_plugins.reinitlab_plugins.sweeper import expand

        sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_") or ""
        if not sweeper.endswith("BasicSweeper"):
            return swept, None
        parsed = OverridesParser.create().parse_overrides(
            [f"{k}={v}" for k, v in params.items()] + task_overrides
        )
        return swept, expand(parsed)
    except Exception:
        return swept, None


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
        if not any(root.iterdir()):
            raise ReinitlabError(f"report: {str(root)!r} is empty (no sweep or run output in it)")
        ledger = Ledger(root)
        if not ledger.jobs:
            raise ReinitlabError(
                f"report: no result records ({RESULT_FILENAME}) and no Hydra job dirs under "
                f"{str(root)!r}; give a sweep dir such as multirun/<date>_<id>"
            )
        if ledger.plan_error:
            problems.append(Problem("corrupt", str(root / PLAN_FILENAME), ledger.plan_error))
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
        if multirun_yaml.is_file():
            swept, planned = planned_jobs(multirun_yaml)
            info["swept"] = swept
            if ledger.plan is None and planned is not None:
                info["planned"] = len(planned)
                started = {frozenset(j.overrides) for j in jobs}
                for job_overrides in planned:
                    if frozenset(job_overrides) not in started:
                        problems.append(
                            Problem(
                                "missing", str(root), "planned but never started", job_overrides
                            )
                        )
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


def is_baseline(scheme: dict[str, Any], num_layers: int | None) -> bool:
    """Baseline = nothing re-initialized (the scheme registry decides: none, progressive with
    k null or L+1, any scheme with its position unset), or a run labelled "baseline" -- unless
    `pooler: true` re-initialized the pooler (then it is a variant of its own, compared with
    the untouched baseline like any other)."""
    from reinitlab.reinit import SCHEMES

    if scheme.get("pooler"):
        return False
    if scheme.get("label") == "baseline":
        return True
    impl = SCHEMES.get(scheme.get("name"))
    return impl is not None and impl.is_baseline(scheme, num_layers)


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
            "task": rec["task"],
            "model": rec["model"],
            "num_layers": num_layers,
            "scheme": scheme.get("name"),
            "label": scheme_variant(scheme, num_layers),
            "variant": scheme_variant(scheme, num_layers),
            "figure": figure_key(scheme),
            "is_baseline": is_baseline(scheme, num_layers),
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
