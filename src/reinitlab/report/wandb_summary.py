"""`reinitlab report --wandb`: the report's tables and figures as one W&B summary run, in the
study's group (its `study` option, else the sweep dir's name, as train.py groups the jobs):
the head grids, the layer curves (as W&B line charts too), every table and every figure;
offline unless asked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

RUN_COLUMNS = ["task", "model", "size", "label", "variant", "seed", "primary", "run_dir"]


def _table(df: pd.DataFrame):
    """A wandb.Table; object columns as text so mixed None/str/list values are accepted."""
    import wandb

    frame = df.copy()
    for c in frame.columns:
        if frame[c].dtype == object or str(frame[c].dtype).startswith(("string", "str")):
            frame[c] = frame[c].map(lambda v: "" if v is None or v != v else str(v))
        elif frame[c].dtype == bool:
            frame[c] = frame[c].astype(int)
    return wandb.Table(dataframe=frame.reset_index(drop=True))


def _project(records: list[dict]) -> str:
    for rec in records:
        project = ((rec.get("config") or {}).get("logger") or {}).get("project")
        if project:
            return str(project)
    return "reinitlab"


def log_summary(report, online: bool = False, project: str | None = None) -> Path:
    """Log one W&B run (job_type `report`) and return its local run directory."""
    import wandb

    col = report.collection
    studies = report.runs["study"].dropna() if "study" in report.runs else []
    group = str(studies.iloc[0]) if len(studies) else Path(col.sweeps[0]["dir"]).resolve().name
    kinds = {k: sum(p.kind == k for p in col.problems) for k in ("failed", "missing", "corrupt")}
    run = wandb.init(
        project=project or _project(col.records),
        group=group,
        job_type="report",
        name=f"report-{group}",
        dir=str(report.out_dir),
        mode="online" if online else "offline",
        config={
            "sweep_dirs": [s["dir"] for s in col.sweeps],
            "swept": {s["dir"]: s["swept"] for s in col.sweeps},
            "bootstrap_resamples": report.n_resamples,
            "study": group,
        },
    )
    try:
        data = {
            "report/aggregates": _table(report.aggregates),
            "report/runs": _table(report.runs[[c for c in RUN_COLUMNS if c in report.runs]]),
        }
        if not report.delta_cells.empty:
            data["report/paired_deltas"] = _table(report.delta_cells)
        for name, table in report.summaries.items():
            data[f"report/summary_{name}"] = _table(table)
        for name, table in report.tables.items():
            data[f"report/{name}"] = _table(table)
            if name.startswith("layer_curve_") and not table.empty:
                data[f"curves/{name}"] = wandb.plot.line(
                    _table(table[["k", "mean"]]), "k", "mean", title=name
                )
        for fig in report.figures:
            data[f"figures/{Path(fig['png']).stem}"] = wandb.Image(
                str(fig["png"]), caption=fig["title"]
            )
        run.log(data)
        run.summary.update(
            {
                "runs_done": len(col.records),
                **{f"runs_{k}": v for k, v in kinds.items()},
                # sweeps whose plan could not be read: runs_missing leaves their jobs out
                "plans_unreadable": sum(p.kind == "plan" for p in col.problems),
            }
        )
        decisions = report.tables.get("decisions")
        if decisions is not None:  # adaptive seeds: how many variants ended each way
            outcome = decisions["decision"].where(~decisions["at_budget"], "undecided at budget")
            run.summary.update(
                {f"decisions/{k}": int(v) for k, v in outcome.value_counts().items()}
            )
        return Path(run.dir).parent
    finally:
        run.finish()
