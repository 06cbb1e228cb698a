"""`reinitlab dashboard SWEEP_DIR --entity E --project P [--push]`: a W&B workspace for a study.

A researcher browsing a study in W&B otherwise builds every panel by hand, per study. This
builds the workspace as code (the `wandb-workspaces` package) from what the study's runs
actually logged: their `.wandb` files are read back (`wandb_files`), so the workspace groups by
config keys the runs have and names only metrics they logged. Offline (the default) it writes
the workspace spec as JSON and prints the command that pushes it; `--push` saves it to W&B
(needs `wandb login` and the runs synced with `wandb sync`).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reinitlab.errors import ReinitlabError
from reinitlab.report.collect import collect
from reinitlab.report.wandb_files import WandbFileError, find_run_files, flat_keys, read_run

PRIMARY = "val/primary"
# The flat keys train.py logs (builder.run_filters), each with the nested config key that
# says the same in runs logged before they existed.
GROUP_KEYS = {
    "task_name": "task.name",
    "model_name": "model.name",
    "scheme": "reinit.name",
    "label": "scheme_label",
}
POSITION_KEYS = ("k", "layer", "head")  # a run's place on the layer curve / head grid
_HEAD = re.compile(r"^deltas/head/L(\d+)H(\d+)$")
_LAYER = re.compile(r"^deltas/layer_(\d+)/(all|attention|ffn|from_pretrained)$")


@dataclass
class StudyRuns:
    """What the study's runs logged, read back from their `.wandb` files."""

    sweep_dir: Path
    study: str
    runs: list[dict[str, Any]]  # read_run() dicts, each with "config_flat" and "job_dir"
    history_keys: set[str] = field(default_factory=set)
    summary_keys: set[str] = field(default_factory=set)
    without_wandb: list[str] = field(default_factory=list)  # completed jobs with no run file
    # jobs of the sweep that are not (yet) in the workspace, by state: running, missing, ...
    not_done: dict[str, int] = field(default_factory=dict)
    completed: int = 0


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A run's config as W&B names its keys in panels and filters: `task.name`, `k`."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = value
    return out


def read_study(sweep_dir: str | Path) -> StudyRuns:
    """Every completed job of the sweep (through the ledger) and its W&B run file(s); an error
    when none of them logged to W&B (the sweep ran with logger=csv or logger=none)."""
    root = Path(sweep_dir)
    collection = collect([root])
    runs, missing = [], []
    for rec in collection.records:
        files = find_run_files(rec["run_dir"])
        if not files:
            missing.append(rec["run_dir"])
            continue
        for path in files:  # a resumed job appends to its run id; each file is one attempt
            try:
                run = read_run(path)
            except WandbFileError as e:
                missing.append(f"{rec['run_dir']} ({e})")
                continue
            run["config_flat"] = flat_config(run["config"])
            run["job_dir"] = rec["run_dir"]
            runs.append(run)
    if not runs:
        raise ReinitlabError(
            f"dashboard: no W&B run files (wandb/offline-run-*/run-*.wandb) under the "
            f"{len(collection.records)} completed jobs of {str(root)!r}; the sweep must run with "
            "logger=wandb (the default)"
        )
    studies = {str(r["config_flat"].get("study")) for r in runs if r["config_flat"].get("study")}
    groups = {r["group"] for r in runs if r["group"]}
    study = next(iter(studies)) if len(studies) == 1 else next(iter(groups), root.name)
    out = StudyRuns(root, study, runs, without_wandb=missing, completed=len(collection.records))
    for p in collection.problems:
        out.not_done[p.kind] = out.not_done.get(p.kind, 0) + 1
    for run in runs:
        for row in run["history"]:
            out.history_keys |= {
                k for k, v in row.items() if not k.startswith("_") and isinstance(v, int | float)
            }
        out.summary_keys |= {k for k in flat_keys(run["summary"]) if not k.startswith("_")}
    return out


def _config_key(study: StudyRuns, flat: str, nested: str | None = None) -> str | None:
    """The key every run's config has: the flat one, else its older nested spelling."""
    for key in (flat, nested):
        if key and all(key in r["config_flat"] for r in study.runs):
            return key
    return None


def _varies(study: StudyRuns, key: str) -> bool:
    return len({json.dumps(r["config_flat"].get(key), default=str) for r in study.runs}) > 1


@dataclass
class DashboardPlan:
    """What the workspace shows, in terms of the runs' own keys (tests and the JSON read it)."""

    study: str
    groupby: list[str]  # config keys: the groups are the seeds of one (task, variant)
    filter_key: str | None  # config key that selects the study's runs
    history_metrics: list[str]
    summary_metrics: list[str]
    parallel_columns: list[str]  # config keys, then the summary metric
    baseline_runs: list[str]  # run ids


def plan_dashboard(study: StudyRuns) -> DashboardPlan:
    """Decide groups, filter, metrics and baseline runs from what the runs logged."""
    task_key = _config_key(study, "task_name", GROUP_KEYS["task_name"])
    groupby = [task_key] if task_key else []
    for flat, nested in GROUP_KEYS.items():
        key = _config_key(study, flat, nested)
        if flat != "task_name" and key and _varies(study, key):
            groupby.append(key)
    history = sorted(study.history_keys)
    summary = sorted(study.summary_keys)
    primary_summary = next(
        (k for k in (f"{PRIMARY}.last", PRIMARY, f"{PRIMARY}.max") if k in study.summary_keys),
        None,
    )
    positions = [k for k in POSITION_KEYS if _config_key(study, k) and _varies(study, k)]
    columns = [c for c in (task_key, *positions, _config_key(study, "seed")) if c]
    if primary_summary:
        columns.append(primary_summary)
    baselines = sorted(
        {
            r["run_id"]
            for r in study.runs
            if r["config_flat"].get("is_baseline") is True
            or r["config_flat"].get("scheme_label") == "baseline"
        }
    )
    return DashboardPlan(
        study=study.study,
        groupby=groupby,
        filter_key=_config_key(study, "study"),
        history_metrics=history,
        summary_metrics=summary,
        parallel_columns=columns,
        baseline_runs=baselines,
    )


def _layer_sorted(keys, pattern: re.Pattern, part: str | None = None) -> list[str]:
    found = []
    for k in keys:
        m = pattern.match(k)
        if m and (part is None or m.group(2) == part):
            found.append((int(m.group(1)), k))
    return [k for _, k in sorted(found)]


def build_workspace(study: StudyRuns, entity: str, project: str):
    """The wandb-workspaces Workspace of the study, and its plan.

    Long because it is the workspace's one list of sections and panels, each naming only
    metrics the runs logged; split, each part would recheck what exists.
    """
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as e:
        raise ReinitlabError(
            "dashboard: the wandb-workspaces package is not installed; "
            "pip install 'reinitlab[dashboard]' (or pip install wandb-workspaces)"
        ) from e

    plan = plan_dashboard(study)
    hist, summ = set(plan.history_metrics), set(plan.summary_metrics)
    agg = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stderr"}
    sections = []
    primary_panels = []
    if PRIMARY in hist:
        primary_panels.append(
            wr.LinePlot(
                title=f"{PRIMARY} over training, per group (mean ± stderr over seeds)",
                y=[PRIMARY],
                **agg,
            )
        )
    last = next((k for k in (f"{PRIMARY}.last", PRIMARY) if k in summ), None)
    if last:
        primary_panels.append(
            wr.BarPlot(
                title=f"final {PRIMARY} per group (mean ± stderr over seeds)",
                metrics=[last],
                **agg,
            )
        )
        k_key = _config_key(study, "k")
        if k_key and _varies(study, k_key):
            primary_panels.append(
                wr.ScatterPlot(
                    title=f"final {PRIMARY} vs k (k = L+1: the baseline)",
                    x=wr.Config(k_key),
                    y=wr.SummaryMetric(last),
                )
            )
    if f"{PRIMARY}.max" in summ:
        primary_panels.append(
            wr.BarPlot(
                title=f"best {PRIMARY} per group (mean ± stderr over seeds)",
                metrics=[f"{PRIMARY}.max"],
                **agg,
            )
        )
    other_val = sorted(k for k in hist if k.startswith("val") and k != PRIMARY)
    if other_val:
        primary_panels.append(
            wr.LinePlot(title="every dev metric (mean ± stderr)", y=other_val, **agg)
        )
    if primary_panels:
        sections.append(ws.Section(name=f"Study {plan.study}: {PRIMARY}", panels=primary_panels))

    layer_panels = []
    for part in ("all", "attention", "ffn", "from_pretrained"):
        keys = _layer_sorted(hist, _LAYER, part)
        if keys:
            what = "distance to pretrained" if part == "from_pretrained" else f"{part} movement"
            layer_panels.append(
                wr.LinePlot(title=f"per-layer {what} (mean ± stderr)", y=keys, **agg)
            )
    final_layers = _layer_sorted(summ, _LAYER, "all")
    if final_layers:
        layer_panels.append(
            wr.BarPlot(
                title="final per-layer movement (mean ± stderr)", metrics=final_layers, **agg
            )
        )
    cka = sorted(k for k in hist if k.startswith("deltas/cka/"))
    if cka:
        layer_panels.append(wr.LinePlot(title="CKA vs fit start (mean ± stderr)", y=cka, **agg))
    if layer_panels:
        sections.append(ws.Section(name="Weight movement per layer", panels=layer_panels))

    heads = _layer_sorted(summ, _HEAD)
    by_layer: dict[int, list[str]] = {}
    for key in heads:
        by_layer.setdefault(int(_HEAD.match(key).group(1)), []).append(key)
    if by_layer:
        sections.append(
            ws.Section(
                name="Weight movement per head",
                panels=[
                    wr.BarPlot(title=f"Layer {layer}: final movement per head", metrics=keys, **agg)
                    for layer, keys in sorted(by_layer.items())
                ],
            )
        )

    columns = [
        wr.ParallelCoordinatesPlotColumn(
            metric=wr.SummaryMetric(c) if c.startswith(PRIMARY) else wr.Config(c)
        )
        for c in plan.parallel_columns
    ]
    if len(columns) >= 2:
        sections.append(
            ws.Section(
                name="Overview",
                panels=[
                    wr.ParallelCoordinatesPlot(
                        title=f"task, scheme position, seed -> {PRIMARY}", columns=columns
                    )
                ],
            )
        )
    settings: dict[str, Any] = {"groupby": [ws.Config(k) for k in plan.groupby]}
    if plan.filter_key:
        settings["filters"] = [ws.Config(plan.filter_key) == plan.study]
    if plan.baseline_runs:
        settings["baseline_run"] = ws.RunRef(slug=plan.baseline_runs[0])
        settings["pinned_runs"] = list(plan.baseline_runs)
    workspace = ws.Workspace(
        entity=entity,
        project=project,
        name=f"reinitlab study {plan.study}",
        sections=sections,
        runset_settings=ws.RunsetSettings(**settings),
    )
    return workspace, plan


def workspace_json(workspace, plan: DashboardPlan) -> dict[str, Any]:
    """The spec `--push` sends (wandb-workspaces' own serialisation), with what it was built
    from: the study, its groups and metrics, its baseline runs.

    wandb-workspaces has no public serialiser; `Workspace._to_model()` is what its own `save`
    sends, so the file equals the pushed spec (the push test checks this)."""
    spec = workspace._to_model().spec.model_dump_json(by_alias=True, exclude_none=True)
    return {
        "entity": workspace.entity,
        "project": workspace.project,
        "name": workspace.name,
        "reinitlab": {
            "study": plan.study,
            "groupby": plan.groupby,
            "filter_key": plan.filter_key,
            "history_metrics": plan.history_metrics,
            "summary_metrics": plan.summary_metrics,
            "parallel_columns": plan.parallel_columns,
            "baseline_runs": plan.baseline_runs,
        },
        "spec": json.loads(spec),
    }


def push(workspace) -> str:
    """Save the workspace to W&B (its API client; needs a login); returns its URL."""
    try:
        saved = workspace.save()
        return str(saved.url)
    except Exception as e:  # the client raises its own errors for no login / no network
        raise ReinitlabError(
            f"dashboard --push: W&B did not save the workspace ({type(e).__name__}: {e}); "
            "log in with `wandb login` (or set WANDB_API_KEY), check --entity/--project, and "
            "sync the runs first (`wandb sync <sweep>/*/wandb/offline-run-*`)"
        ) from e


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SWEEP_DIR, the W&B entity and project, --out for the spec, --push."""
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep dir (multirun/<sweep>)")
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project of the study's runs")
    parser.add_argument(
        "--out",
        default=None,
        help="where to write the workspace spec (default: <SWEEP_DIR>/wandb_workspace.json)",
    )
    parser.add_argument(
        "--push", action="store_true", help="save the workspace to W&B (needs `wandb login`)"
    )


def run(args: argparse.Namespace) -> int:
    """Build the workspace, write its JSON spec, and push it when asked."""
    from reinitlab.report.io import write_text

    study = read_study(args.sweep_dir)
    workspace, plan = build_workspace(study, args.entity, args.project)
    out = Path(args.out) if args.out else Path(args.sweep_dir) / "wandb_workspace.json"
    write_text(out, json.dumps(workspace_json(workspace, plan), indent=1) + "\n")
    print(
        f"[reinitlab] dashboard: study {plan.study}: {len(study.runs)} runs, grouped by "
        f"{', '.join(plan.groupby) or 'nothing'}; workspace spec -> {out}"
    )
    if study.not_done:
        total = study.completed + sum(study.not_done.values())
        states = ", ".join(f"{n} {kind}" for kind, n in sorted(study.not_done.items()))
        print(
            f"[reinitlab] dashboard: the sweep is not finished: the workspace is built from "
            f"{study.completed} of {total} jobs ({states}); run `reinitlab dashboard` again "
            "when it is, for panels over every run"
        )
    if study.without_wandb:
        print(
            f"[reinitlab] dashboard: {len(study.without_wandb)} completed job(s) have no W&B "
            "run file: " + "; ".join(study.without_wandb[:5]),
        )
    if args.push:
        print(f"[reinitlab] dashboard: saved: {push(workspace)}")
    else:
        print(
            "[reinitlab] dashboard: to save it to W&B, sync the offline runs and push:\n"
            f"  wandb sync {Path(args.sweep_dir)}/*/wandb/offline-run-*\n"
            f"  reinitlab dashboard {args.sweep_dir} --entity {args.entity} "
            f"--project {args.project} --push"
        )
    return 0
