"""Assemble a report: collect runs, compute statistics, draw figures, write tables and HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reinitlab.report import figures as fg
from reinitlab.report import stats
from reinitlab.report.collect import Collection, collect, runs_frame, varying_config_columns
from reinitlab.report.io import atomic_path
from reinitlab.report.probes import probe_figure, probe_table, spearman_vs_reinit
from reinitlab.report.transfer import transfer_cells

GROUP = ["task", "model", "size", "factors", "chain"]


def _via(chain: str) -> str:
    """File-name part for a task chain; empty for direct fine-tuning."""
    return "" if chain == "none" else f"via_{chain.replace('→', '-')}"


@dataclass
class Report:
    """Everything a report holds: the runs and statistics tables, figures (title, caption, png,
    svg), notes for the reader, and the files written into `out_dir`."""

    out_dir: Path
    collection: Collection
    runs: pd.DataFrame
    aggregates: pd.DataFrame
    deltas: pd.DataFrame
    delta_cells: pd.DataFrame
    summaries: dict[str, pd.DataFrame]
    transfer: pd.DataFrame = field(default_factory=pd.DataFrame)
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: list[dict[str, Any]] = field(default_factory=list)  # title, caption, png, svg
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    parquet_written: bool = False
    n_resamples: int = 10_000


def _baseline_summary(
    runs: pd.DataFrame, used: pd.DataFrame, n_resamples: int, seed: int
) -> pd.Series | None:
    """The baseline drawn in a figure: the baseline runs its deltas were paired with, or every
    baseline run of the group when nothing was paired."""
    dirs = {d for s in used.get("baseline_runs", pd.Series(dtype=str)) for d in str(s).split()}
    base_runs = runs[runs["is_baseline"]]
    if dirs:
        base_runs = base_runs[base_runs["run_dir"].isin(dirs)]
    base = base_runs["primary"].to_numpy(dtype=float)
    if len(base) == 0:
        return None
    lo, hi = stats.bootstrap_ci(base, n_resamples=n_resamples, seed=seed)
    return pd.Series({"mean": base.mean(), "ci_low": lo, "ci_high": hi, "n": len(base)})


def _draw(report: Report, records_by_dir: dict[str, dict], n_resamples: int, seed: int) -> None:
    """Draw every figure into `report.figures`: per group, each scheme's figure, probing and
    weight movement (a note when bad records make those skip); then data-size and transfer.

    Long because it is one loop over the (task, model, size, factors, chain) groups choosing
    each scheme's figure kind and caption; the branches share the group's title, name and cells.
    """
    runs, agg, dcells = report.runs, report.aggregates, report.delta_cells
    fig_dir = report.out_dir / "figures"

    def add(paths, title, caption):
        report.figures.append(
            {"title": title, "caption": caption, "png": paths[0], "svg": paths[1]}
        )

    for key, g_runs in runs.groupby(GROUP, sort=True, dropna=False):
        task, model, size, factors, chain = key
        title = fg.figure_title(task, model, size, factors, chain)
        metric = str(g_runs["primary_metric"].iloc[0])
        g_agg = agg.merge(pd.DataFrame([dict(zip(GROUP, key, strict=True))]), on=GROUP)
        g_dc = (
            dcells.merge(pd.DataFrame([dict(zip(GROUP, key, strict=True))]), on=GROUP)
            if not dcells.empty
            else dcells
        )
        for (scheme, figure), cells in g_agg[~g_agg["is_baseline"]].groupby(["scheme", "figure"]):
            fdc = (
                g_dc[(g_dc["scheme"] == scheme) & (g_dc["figure"] == figure)]
                if not g_dc.empty
                else g_dc
            )
            name = fg.slug(task, model, size, factors, _via(chain), figure)
            kind = figure_kind(scheme)
            if kind == "layer_curve" and cells["scheme.k"].notna().all():
                used = report.deltas[
                    report.deltas["run_dir"].isin(g_runs.loc[g_runs["figure"] == figure, "run_dir"])
                ]
                baseline = _baseline_summary(g_runs, used, n_resamples, seed)
                paths = fg.layer_curve(
                    cells,
                    baseline,
                    fdc,
                    metric,
                    f"{title}\n{fg.pretty(figure)}",
                    fig_dir,
                    f"layers_{name}",
                )
                add(
                    paths,
                    f"Layer curve: {title} ({fg.pretty(figure)})",
                    "Dev metric vs k (layers k..L re-initialized): mean over seeds with 95% "
                    "bootstrap CI band; dashed line = baseline (band = its CI). "
                    "* = Holm-adjusted p < 0.05 vs baseline.",
                )
            elif kind == "head_heatmap" and not fdc.empty and fdc["head_layer"].notna().all():
                paths = fg.head_heatmap(
                    fdc, metric, f"{title}\n{fg.pretty(figure)}", fig_dir, f"heads_{name}"
                )
                add(
                    paths,
                    f"Head heatmap: {title} ({fg.pretty(figure)})",
                    "Mean paired delta vs baseline per (layer, head); red = worse, blue = better "
                    "than the baseline. * = Holm-adjusted p < 0.05.",
                )
            elif not fdc.empty and fdc["n_pairs"].gt(0).any():
                paths = fg.delta_bars(
                    fdc[fdc["n_pairs"] > 0],
                    metric,
                    f"{title}\n{fg.pretty(figure)}",
                    fig_dir,
                    f"bars_{name}",
                )
                add(
                    paths,
                    f"{scheme}: {title} ({fg.pretty(figure)})",
                    "Mean paired delta vs baseline per variant, error bars = 95% bootstrap CI.",
                )
        # probing beside the reinit curve, when baseline records carry probe results
        try:
            _draw_probes(report, g_runs, g_agg, records_by_dir, title, metric, key, add)
        except (KeyError, ValueError, TypeError) as e:
            report.notes.append(
                f"Probe figure for {title} skipped: unexpected probe results ({e!r})."
            )
        # weight movement, when the records carry the deltas matrices
        try:
            _draw_movement(
                report, g_runs, records_by_dir, title, fg.slug(*key[:4], _via(chain)), add
            )
        except (KeyError, ValueError, TypeError, IndexError) as e:
            report.notes.append(
                f"Weight-movement figures for {title} skipped: the records' "
                f"deltas matrices do not have the expected shape ({e!r})."
            )

    # data-size curves: per task/model/factors when the sweep varies data.max_train_samples
    for (task, model, factors, chain), g in agg.groupby(
        ["task", "model", "factors", "chain"], dropna=False
    ):
        sized = g[g["size"] != "all"]
        if sized["size"].nunique() < 2:
            continue
        metric = str(g["primary_metric"].iloc[0])
        # baselines of different scheme names are one line
        sized = sized.assign(variant=sized["variant"].where(~sized["is_baseline"], "baseline"))
        sized = sized.groupby("variant").filter(lambda v: v["size"].nunique() >= 2)
        sized = sized.drop_duplicates(["variant", "size"])
        if sized.empty:
            continue
        title = f"{task} · {model}" + (f" · {factors}" if factors else "")
        title += f" · after {chain}" if chain != "none" else ""
        paths = fg.data_size_curve(
            sized, metric, title, fig_dir, f"datasize_{fg.slug(task, model, factors, _via(chain))}"
        )
        add(
            paths,
            f"Data size: {title}",
            "Dev metric vs training-set size, one line per scheme variant (mean, 95% CI band).",
        )
    _draw_transfer(report, add)


def _draw_transfer(report: Report, add) -> None:
    cells = report.transfer
    if cells.empty:
        return
    for (model, size, factors, variant), m in cells.groupby(
        ["model", "size", "factors", "variant"], dropna=False, sort=True
    ):
        size_txt = "full train sets" if size == "all" else f"{size} train examples"
        title = f"{model} · {size_txt}" + (f" · {factors}" if factors else "")
        if variant != "baseline":
            title += f" · {fg.pretty(variant)}"
        name = fg.slug(model, size, factors, "" if variant == "baseline" else variant)
        means, deltas = fg.transfer_heatmaps(m, title, report.out_dir / "figures", name)
        add(
            means,
            f"Transfer matrix: {title}",
            "Rows: final task; columns: intermediate task(s) fine-tuned on first (none = direct "
            "fine-tuning). Mean dev metric over seeds with 95% bootstrap CI; ▲ = above direct.",
        )
        add(
            deltas,
            f"Transfer vs direct fine-tuning: {title}",
            "Paired delta vs direct fine-tuning (same final task, seed and training subset); "
            "* = Holm-adjusted p < 0.05 across the matrix.",
        )


def _draw_probes(report, g_runs, g_agg, records_by_dir, title, metric, key, add) -> None:
    table = probe_table(g_runs, records_by_dir)
    if table.empty:
        return
    prog = g_agg[(g_agg["scheme"] == "progressive") & ~g_agg["is_baseline"]]
    curve = {int(r["scheme.k"]): float(r["mean"]) for _, r in prog.iterrows()}
    base_values = g_runs.loc[g_runs["is_baseline"], "primary"]
    baseline = float(base_values.mean()) if len(base_values) else None
    name = fg.slug(*key[:4], _via(key[4]))
    paths = probe_figure(
        table, curve, baseline, metric, title, report.out_dir / "figures", f"probe_{name}"
    )
    caption = (
        "Top: fine-tuned dev metric vs k (layers k..L re-initialized); middle: linear-probe "
        "dev metric of each layer of the baseline runs, pretrained and fine-tuned; bottom: "
        "hidden-state variability per layer."
    )
    rho = {"rho": math.nan, "pvalue": math.nan, "n": 0}
    if curve and baseline is not None:
        rho = spearman_vs_reinit(table, curve, baseline)
        caption += (
            f" Spearman ρ(probe metric of layer ℓ, drop at k=ℓ) = {rho['rho']:.3f} "
            f"(p = {rho['pvalue']:.3g}, {rho['n']} layers)."
        )
    add(paths, f"Probing vs reinit: {title}", caption)
    rows = table.assign(**dict(zip(GROUP, key, strict=True)))
    rows["spearman_rho"], rows["spearman_p"] = rho["rho"], rho["pvalue"]
    report.probes = pd.concat([report.probes, rows], ignore_index=True)


def _draw_movement(
    report: Report, g_runs: pd.DataFrame, records_by_dir: dict, title: str, name: str, add
) -> None:
    fig_dir = report.out_dir / "figures"
    with_deltas = g_runs[g_runs["has_deltas"]]
    if with_deltas.empty:
        return
    rows, head_example = [], None
    order = with_deltas.sort_values(["is_baseline", "variant"], ascending=[False, True])
    for _, gv in order.groupby("variant", sort=False):
        mean = fg.mean_deltas([records_by_dir[d] for d in gv["run_dir"]])
        label = "baseline" if gv["is_baseline"].all() else str(gv["label"].iloc[0])
        if all(p in mean["layer"] for p in ("all", "attention", "ffn")):
            rows.append((label, mean))
        if "head" in mean and head_example is None:
            head_example = (label, mean["head"])
    widths = {len(d["layer"]["all"]) for _, d in rows}
    if rows and len(widths) == 1:
        paths = fg.movement_heatmaps(rows, title, fig_dir, f"movement_{name}")
        add(
            paths,
            f"Weight movement per layer: {title}",
            "Relative movement of each encoder layer from its fit-start weights "
            "(mean over seeds), per variant; from the deltas matrices in the records.",
        )
    if head_example is not None:
        paths = fg.head_movement_heatmap(*head_example, title, fig_dir, f"head_movement_{name}")
        add(
            paths,
            f"Weight movement per head: {title} ({head_example[0]})",
            "Relative movement of each head's Q/K/V rows and output-projection columns "
            "(mean over seeds).",
        )


def figure_kind(scheme: str) -> str:
    """The figure a scheme's runs are drawn in (the scheme registry says; unknown: bars)."""
    from reinitlab.reinit import SCHEMES

    impl = SCHEMES.get(scheme)
    return impl.figure if impl is not None else "bars"


def build_report(
    dirs: list[str | Path],
    out_dir: str | Path,
    metric: str = "auto",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Report:
    """Collect the runs under `dirs`, compute aggregates and paired deltas, draw the figures, and
    write the tables and report.html into `out_dir`; `metric` as in `runs_frame`."""
    from reinitlab.report.html import write_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    collection = collect(dirs)
    runs = runs_frame(collection.records, metric=metric)
    if runs.empty:
        agg = deltas = dcells = pd.DataFrame()
    else:
        agg = stats.aggregates(runs, n_resamples=n_resamples, seed=seed)
        deltas = stats.paired_deltas(runs)
        dcells = (
            stats.delta_cells(deltas, n_resamples=n_resamples, seed=seed)
            if len(deltas)
            else pd.DataFrame()
        )
    summaries = {}
    if len(deltas) and deltas["head_layer"].notna().any():
        summaries["per_layer"] = stats.summary_table(deltas, "head_layer")
        summaries["per_head"] = stats.summary_table(deltas, "head_index")
    report = Report(out, collection, runs, agg, deltas, dcells, summaries, n_resamples=n_resamples)
    report.notes = _notes(report)

    report.transfer = transfer_cells(runs, n_resamples=n_resamples, seed=seed)
    records_by_dir = {r["run_dir"]: r for r in collection.records}
    if not runs.empty:
        _draw(report, records_by_dir, n_resamples, seed)
    _write_tables(report)
    report.files.append(write_html(report))
    return report


def _notes(report: Report) -> list[str]:
    notes = []
    dc = report.delta_cells
    if not dc.empty and dc["n_pairs"].max() <= 1:
        notes.append(
            "Single seed: every delta is one run minus its baseline; no significance test is "
            "possible, so deltas are reported without p-values. Sweep seed=0,1,2,... to get them."
        )
    elif not dc.empty and (dc["n_pairs"] <= 1).any():
        notes.append(
            "Cells with a single paired seed report their delta without a significance test."
        )
    if not report.deltas.empty and report.deltas["baseline_missing"].any():
        n = int(report.deltas["baseline_missing"].sum())
        notes.append(
            f"{n} run(s) have no baseline with the same task, model, seed and training subset: "
            "their delta is missing (never paired with another seed's baseline)."
        )
    if not report.runs.empty and not report.runs["is_baseline"].any():
        notes.append("No baseline runs (reinit=none or k=L+1) were found: no deltas.")
    if not report.runs.empty:
        factors = varying_config_columns(report.runs)
        if factors:
            notes.append(
                "Also varied (split into separate cells): "
                + ", ".join(c.removeprefix("config.") for c in factors)
            )
    return notes


def _write_tables(report: Report) -> None:
    out = report.out_dir
    tables = {
        "runs": report.runs,
        "aggregates": report.aggregates,
        "deltas": report.deltas,
        "delta_cells": report.delta_cells,
        **{f"summary_{k}": v for k, v in report.summaries.items()},
    }
    if not report.transfer.empty:
        tables["transfer"] = report.transfer
    if not report.probes.empty:
        tables["probes"] = report.probes
    for name, df in tables.items():
        path = out / f"{name}.csv"
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        report.files.append(path)
    problems = pd.DataFrame(
        [
            {
                "kind": p.kind,
                "where": p.where,
                "reason": p.reason,
                "overrides": " ".join(p.overrides),
            }
            for p in report.collection.problems
        ],
        columns=["kind", "where", "reason", "overrides"],
    )
    with atomic_path(out / "problems.csv") as tmp:
        problems.to_csv(tmp, index=False)
    report.files.append(out / "problems.csv")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        report.notes.append("pyarrow is not installed: runs.parquet was not written.")
        return
    # Parquet wants one type per column: mixed object columns (JSON lists next to None) as text
    frame = report.runs.copy()
    for c in frame.columns:
        if frame[c].dtype == object:
            frame[c] = frame[c].map(
                lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            )
    with atomic_path(out / "runs.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    report.files.append(out / "runs.parquet")
    report.parquet_written = True
