"""Assemble a report: collect runs, compute statistics, draw figures, write tables and HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reinitlab.probing.correlation import CURVE_FIGURE
from reinitlab.report import figures as fg
from reinitlab.report import stats
from reinitlab.report.collect import Collection, collect, runs_frame, varying_config_columns
from reinitlab.report.decisions import (
    decisions_caption,
    decisions_for_paper,
    decisions_table,
)
from reinitlab.report.io import atomic_path, write_table
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
    figures: list[dict[str, Any]] = field(default_factory=list)  # title, caption, png, svg, pdf
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # head grids, recipes
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    parquet_written: bool = False
    n_resamples: int = 10_000
    # the sequential seed rule's decisions (<sweep>/decisions.json), when a sweep has them
    decisions: pd.DataFrame = field(default_factory=pd.DataFrame)


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
    lo, hi, method = stats.mean_ci(base, n_resamples=n_resamples, seed=seed)
    return pd.Series(
        {"mean": base.mean(), "ci_low": lo, "ci_high": hi, "n": len(base), "ci_method": method}
    )


def _unique(values) -> str:
    shown = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        text = f"{v:g}" if isinstance(v, float) else str(v)
        if text not in shown:
            shown.append(text)
    return "/".join(shown) if shown else "?"


def recipe(runs: pd.DataFrame) -> dict[str, str]:
    """The fine-tuning recipe of `runs` (lr, epochs, batch size, train-set size, max length),
    each as text; several values in one group are joined by `/`."""

    def col(name):
        return runs[name] if name in runs else pd.Series([None] * len(runs), dtype=object)

    epochs = _unique(col("config.trainer.max_epochs"))
    if col("config.early_stopping.patience").notna().any():
        epochs = f"up to {epochs} (early stopping)"
    steps = col("config.trainer.max_steps")
    out = {
        "lr": _unique(col("config.optim.lr")),
        "epochs": epochs,
        "batch size": _unique(col("config.data.batch_size")),
        "train examples": _unique(col("train_size")),
        "max length": _unique(col("config.data.max_length")),
    }
    stride = col("config.task.qa.doc_stride")  # question answering (SQuAD) only
    if stride.notna().any():
        out["doc stride"] = _unique(stride)
    if steps.notna().any() and (steps.fillna(-1).astype(float) > 0).any():
        out["max steps"] = _unique(steps)
    return out


def recipe_text(runs: pd.DataFrame) -> str:
    """`lr 2e-05, epochs 3, batch 32, 8551 train examples, max length 128`."""
    r = recipe(runs)
    text = (
        f"lr {r['lr']}, epochs {r['epochs']}, batch {r['batch size']}, "
        f"{r['train examples']} train examples, max length {r['max length']}"
    )
    return text + (f", max {r['max steps']} steps" if "max steps" in r else "")


def recipes_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, task, model, train size, factors, chain): the recipe, for the
    report's header and `recipe.csv`."""
    keys = ["study", "task", "model", "size", "factors", "chain"]
    rows = [
        {**dict(zip(keys, key, strict=True)), "runs": len(g), **recipe(g)}
        for key, g in runs.groupby(keys, dropna=False, sort=True)
    ]
    return pd.DataFrame(rows)


def _context(g_runs: pd.DataFrame) -> str:
    """The sentence every caption ends with: study, model and recipe of the drawn runs."""
    studies = _unique(g_runs["study"]) if "study" in g_runs else "?"
    return f" Study {studies}; model {_unique(g_runs['model'])}; recipe: {recipe_text(g_runs)}."


def _interval_phrase(cells: pd.DataFrame) -> str:
    """What the drawn intervals and marks are, from the cells' own `ci_method`/`test`."""
    methods = set(cells.get("ci_method", pd.Series(dtype=str)).dropna())
    drawn = sorted(m for m in methods if not m.startswith("none"))
    names = {"t": "95% Student t interval", "bootstrap": "95% percentile bootstrap interval"}
    if not drawn:
        return (
            f"No intervals or significance marks: fewer than {stats.MIN_N} seeds per cell, "
            "too few for an honest interval or test."
        )
    text = "Bars = " + " or ".join(names[m] for m in drawn) + " of the mean over seeds"
    if any(m.startswith("none") for m in methods):
        text += f" (none for cells with fewer than {stats.MIN_N} seeds)"
    return text + "."


def _draw(report: Report, records_by_dir: dict[str, dict], n_resamples: int, seed: int) -> None:
    """Draw every figure into `report.figures`: per group, each scheme's figure, probing and
    weight movement (a note when bad records make those skip); then the layer curves of all
    tasks together, data-size and transfer.

    Long because it is one loop over the (task, model, size, factors, chain) groups choosing
    each scheme's figure kind and caption; the branches share the group's title, name and cells.
    """
    runs, agg, dcells = report.runs, report.aggregates, report.delta_cells
    fig_dir = report.out_dir / "figures"
    curves: dict[tuple, list] = {}  # (model, size, factors, chain, figure) -> each task's curve
    # every head grid of the report on one zero-centred colour scale, so grids compare by colour
    head_cells = (
        dcells[dcells["scheme"].map(figure_kind) == "head_heatmap"] if not dcells.empty else dcells
    )
    head_half = fg.shared_halfrange(head_cells["mean_delta"]) if not head_cells.empty else None

    def add(paths, title, caption, kind="other"):
        report.figures.append(
            {
                "title": title,
                "caption": caption,
                "png": paths[0],
                "svg": paths[1],
                "pdf": paths[2],
                "kind": kind,
            }
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
            f_runs = g_runs[(g_runs["figure"] == figure) | g_runs["is_baseline"]]
            context = _context(f_runs)
            name = fg.slug(task, model, size, factors, _via(chain), figure)
            kind = figure_kind(scheme)
            if kind == "layer_curve" and cells["scheme.k"].notna().all():
                used = report.deltas[
                    report.deltas["run_dir"].isin(g_runs.loc[g_runs["figure"] == figure, "run_dir"])
                ]
                baseline = _baseline_summary(g_runs, used, n_resamples, seed)
                curves.setdefault((model, size, factors, chain, figure), []).append(
                    (task, metric, cells, baseline, fdc, f_runs)
                )
                paths = fg.layer_curve(
                    cells, baseline, fdc, metric, f"{title}\n{figure}", fig_dir, f"layers_{name}"
                )
                report.tables[f"layer_curve_{name}"] = _curve_table(cells, baseline)
                cis = (
                    pd.concat([cells, pd.DataFrame([baseline])]) if baseline is not None else cells
                )
                add(
                    paths,
                    f"Layer curve: {title} ({figure})",
                    "(a) Dev metric vs k (layers k..L re-initialized), mean over seeds at each "
                    "k that was run; the baseline (nothing re-initialized) is the open square "
                    "at k=L+1 and the dashed line. (b) Paired difference variant − baseline "
                    "(each run minus the baseline run with the same seed and training subset), "
                    "mean over pairs; 0 = no effect. "
                    + _interval_phrase(cis)
                    + _marks_phrase(fdc)
                    + _decided_phrase(stats.decided(fdc).any())
                    + context,
                    "layer_curve",
                )
            elif kind == "head_heatmap" and not fdc.empty and fdc["head_layer"].notna().all():
                paths = fg.head_heatmap(
                    fdc, metric, f"{title}\n{figure}", fig_dir, f"heads_{name}", head_half
                )
                grid = fg.head_grid(fdc)
                report.tables[f"head_grid_{name}"] = grid.rename_axis("layer").reset_index()
                add(
                    paths,
                    f"Head grid: {title} ({figure})",
                    "Mean paired delta of the dev metric vs the baseline (same seed and "
                    "training subset) per layer and head; diverging colours centred at 0 "
                    "(red = worse, blue = better than the baseline), on one scale shared by "
                    "every head grid of this report."
                    + _marks_phrase(fdc)
                    + f" Table: head_grid_{name}.csv/.tex."
                    + context,
                    "head_grid",
                )
            elif not fdc.empty and fdc["n_pairs"].gt(0).any():
                shown = fdc[fdc["n_pairs"] > 0]
                paths = fg.delta_bars(shown, metric, f"{title}\n{figure}", fig_dir, f"bars_{name}")
                add(
                    paths,
                    f"{scheme}: {title} ({figure})",
                    "Mean paired delta vs baseline per variant. "
                    + _interval_phrase(shown)
                    + _marks_phrase(shown)
                    + context,
                    "bars",
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

    _draw_all_task_curves(report, curves, add)
    _draw_data_size(report, add)
    _draw_transfer(report, add)


def _curve_table(cells: pd.DataFrame, baseline: pd.Series | None) -> pd.DataFrame:
    """The layer curve's points as a table: one row per k, the baseline as k = L+1."""
    cols = ["k", "label", "n", "mean", "ci_low", "ci_high", "ci_method"]
    table = cells.assign(k=cells["scheme.k"].astype(int)).sort_values("k")[cols]
    num_layers = cells["num_layers"].dropna()
    if baseline is not None and len(num_layers):
        row = {"k": int(num_layers.iloc[0]) + 1, "label": "baseline", **baseline.to_dict()}
        table = pd.concat([table, pd.DataFrame([row])[cols]], ignore_index=True)
    return table.reset_index(drop=True)


def _decided_phrase(any_decided: bool) -> str:
    """What † means in a layer-curve figure, when it marks anything."""
    return f" {DECIDED_MARK} = decided by the sequential seed rule." if any_decided else ""


def _marks_phrase(dcells: pd.DataFrame) -> str:
    """What * means in a figure, or why there is none."""
    ruled = (
        dcells["test"].eq(stats.SEQUENTIAL_TEST)
        if not dcells.empty and "test" in dcells
        else pd.Series(dtype=bool)
    )
    if ruled.any():
        # a study's reader must not take an interval that misses 0 for a decision
        sequential = (
            " No * where the adaptive seed rule governs the comparison: its seeds were added "
            "after looking at earlier results, so a fixed-sample test does not hold there; the "
            f"rule's decisions are marked {DECIDED_MARK}, and the error bars of its comparisons "
            "are its own intervals at its last look, adjusted for every look and comparison "
            "(decisions.csv), so a bar that misses 0 there is a decision, not a hint."
        )
        rest = dcells[~ruled]
        return (_marks_phrase(rest) if not rest.empty else "") + sequential
    if dcells.empty or "p" not in dcells or dcells["p"].isna().all():
        return (
            f" No significance marks: no cell has {stats.MIN_N} or more paired seeds "
            "(a test on fewer would not be valid)."
        )
    tests = sorted(set(dcells.loc[dcells["p"].notna(), "test"]))
    return (
        f" * = Holm-adjusted p < 0.05 across this figure's cells ({', '.join(tests)} test vs "
        "the paired baseline)."
    )


def _draw_all_task_curves(report: Report, curves: dict, add) -> None:
    """The study's overview: every task's layer curve in one figure, per model/size/figure."""
    for (model, size, factors, chain, figure), items in sorted(curves.items()):
        if len(items) < 2:
            continue
        size_txt = "full train sets" if size == "all" else f"{size} train examples"
        title = f"All tasks · {model} · {size_txt}" + (f" · {factors}" if factors else "")
        title += f" · after {chain}" if chain != "none" else ""
        drawn = [(t, m, c, b, d) for t, m, c, b, d, _ in items]
        name = fg.slug("all_tasks", model, size, factors, _via(chain), figure)
        paths = fg.layer_curves_all_tasks(
            drawn, f"{title}\n{figure}", report.out_dir / "figures", f"layers_{name}"
        )
        all_cells = pd.concat([c for _, _, c, _, _ in drawn])
        all_runs = pd.concat([r for *_, r in items])
        add(
            paths,
            f"Layer curves, all tasks: {title} ({figure})",
            "(a) Dev metric vs k for every task of the study (each task's primary metric), "
            "mean over seeds; each task's baseline is its open square at k=L+1 and its dashed "
            "line. (b) Paired difference variant − baseline per task (same seed and training "
            "subset); 0 = no effect. "
            + _interval_phrase(all_cells)
            + _marks_phrase(pd.concat([d for *_, d in drawn]))
            + _decided_phrase(any(stats.decided(d).any() for *_, d in drawn))
            + _context(all_runs),
            "layer_curves_all",
        )


def _draw_data_size(report: Report, add) -> None:
    """Data-size curves: per task/model/factors when the sweep varies data.max_train_samples."""
    agg, fig_dir = report.aggregates, report.out_dir / "figures"
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
        r = report.runs
        g_runs = r[(r["task"] == task) & (r["model"] == model) & (r["factors"] == factors)]
        add(
            paths,
            f"Data size: {title}",
            "Dev metric vs training-set size, one line per scheme variant (mean over seeds). "
            + _interval_phrase(sized)
            + _context(g_runs),
        )


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
            title += f" · {variant}"
        name = fg.slug(model, size, factors, "" if variant == "baseline" else variant)
        means, deltas = fg.transfer_heatmaps(m, title, report.out_dir / "figures", name)
        r = report.runs
        context = _context(r[(r["model"] == model) & (r["size"] == size)])
        add(
            means,
            f"Transfer matrix: {title}",
            "Rows: final task; columns: intermediate task(s) fine-tuned on first (none = direct "
            "fine-tuning). Mean dev metric over seeds; ▲ = above direct. "
            + _interval_phrase(m)
            + context,
        )
        add(
            deltas,
            f"Transfer vs direct fine-tuning: {title}",
            "Paired delta vs direct fine-tuning (same final task, seed and training subset)."
            + _marks_phrase(m)
            + context,
        )


def _draw_probes(report, g_runs, g_agg, records_by_dir, title, metric, key, add) -> None:
    table = probe_table(g_runs, records_by_dir)
    if table.empty:
        return
    # the curve's own runs only: a mode=zero or parts run at the same k is another figure
    prog = g_agg[(g_agg["figure"] == CURVE_FIGURE) & ~g_agg["is_baseline"]]
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
    add(paths, f"Probing vs reinit: {title}", caption + _context(g_runs))
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
            "Relative movement ‖θ−θ_start‖/‖θ_start‖ of each encoder layer from its "
            "fit-start weights (mean over seeds), per variant; from the deltas matrices in the "
            "records. Left panel: the whole layer, one norm over all its parameters "
            "(attention, feed-forward and layer norms); it is a norm-weighted average of its "
            "parts, not their sum, and the barely moving layer norms can pull it below both. "
            "The three panels share one colour scale." + _context(g_runs),
        )
    if head_example is not None:
        paths = fg.head_movement_heatmap(*head_example, title, fig_dir, f"head_movement_{name}")
        add(
            paths,
            f"Weight movement per head: {title} ({head_example[0]})",
            "Relative movement of each head's Q/K/V rows and output-projection columns "
            "(mean over seeds)." + _context(g_runs),
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
    from reinitlab.report.document import write_report_tex
    from reinitlab.report.html import write_html
    from reinitlab.sweep.ledger import check_writable

    collection = collect(dirs)  # a bad input dir is refused before anything is created
    out = Path(out_dir)
    check_writable(out, "--out")  # a read-only sweep dir: said here, not as a traceback later
    runs = runs_frame(collection.records, metric=metric)
    decisions = decisions_table([s["dir"] for s in collection.sweeps])
    # comparisons the adaptive seed rule governs: decided by it, never by a fixed-sample test,
    # and shown with its interval (adjusted for every look), not a fixed-sample one
    sequential = (
        {
            (r.sweep, r.cell, r.variant): stats.RuleLook(
                int(r.seeds_used), r.low, r.high, r.decision
            )
            for r in decisions.itertuples(index=False)
        }
        if not decisions.empty
        else {}
    )
    if runs.empty:
        agg = deltas = dcells = pd.DataFrame()
    else:
        agg = stats.aggregates(runs, n_resamples=n_resamples, seed=seed)
        deltas = stats.paired_deltas(runs)
        dcells = (
            stats.delta_cells(deltas, n_resamples=n_resamples, seed=seed, sequential=sequential)
            if len(deltas)
            else pd.DataFrame()
        )
    summaries = {}
    if len(deltas) and deltas["head_layer"].notna().any():
        summaries["per_layer"] = stats.summary_table(deltas, "head_layer")
        summaries["per_head"] = stats.summary_table(deltas, "head_index")
    report = Report(out, collection, runs, agg, deltas, dcells, summaries, n_resamples=n_resamples)
    report.notes = _notes(report)
    if not runs.empty:
        report.tables["recipe"] = recipes_table(runs)
        report.decisions = decisions
        report.tables.update(paper_tables(agg, dcells))
    if not report.decisions.empty:
        report.tables["decisions"] = report.decisions

    report.transfer = transfer_cells(runs, n_resamples=n_resamples, seed=seed)
    records_by_dir = {r["run_dir"]: r for r in collection.records}
    if not runs.empty:
        _draw(report, records_by_dir, n_resamples, seed)
    _write_tables(report)
    report.files.append(write_report_tex(report))
    report.files.append(write_html(report))
    return report


def _notes(report: Report) -> list[str]:
    notes = []
    dc, agg = report.delta_cells, report.aggregates
    few = f"fewer than {stats.MIN_N} seeds"
    why = (
        "with 2 seeds a 95% interval is either the range of the two runs (bootstrap) or "
        "enormous (t with 1 degree of freedom), and a paired test with 1 degree of freedom "
        "calls a lucky pair significant"
    )
    # seeds behind each interval: the pairs of cells that have a baseline, else the runs per
    # cell (a study whose baselines have not run yet has no pairs, not "a single seed")
    paired = dc[dc["n_pairs"] > 0] if not dc.empty else dc
    counts = paired["n_pairs"] if not paired.empty else (agg["n"] if not agg.empty else None)
    if counts is not None and counts.max() <= 1:
        notes.append(
            "Single seed: every delta is one run minus its baseline; no interval and no "
            "significance test is possible, so deltas are reported without p-values. Sweep "
            f"seed=0,1,2,... ({stats.MIN_N} or more) to get them."
        )
    elif counts is not None and (counts < stats.MIN_N).all():
        notes.append(
            f"Every cell has {few}: the report draws no intervals and no significance marks "
            f"and runs no tests ({why}). Sweep seed=0,1,2 or more to get them."
        )
    elif (counts is not None and (counts < stats.MIN_N).any()) or (
        not agg.empty and (agg["n"] < stats.MIN_N).any()
    ):
        notes.append(
            f"Cells with {few} report their mean without an interval and their delta without a "
            f"test ({why})."
        )
    if not report.deltas.empty and report.deltas["baseline_missing"].any():
        n = int(report.deltas["baseline_missing"].sum())
        notes.append(
            f"{n} run(s) have no baseline with the same task, model, seed and training subset: "
            "their delta is missing (never paired with another seed's baseline)."
        )
    if not dc.empty and "n_left_out" in dc and dc["n_left_out"].gt(0).any():
        left = dc[dc["n_left_out"] > 0]
        said = ", ".join(
            f"{r.task} {r.label} ({r.model}): {r.n_left_out}" for r in left.itertuples()
        )
        notes.append(
            "Comparisons the adaptive seed rule decided are shown with the seeds of its own "
            "sweep only (its interval covers them, not runs added from elsewhere); pairs of "
            f"other sweeps left out of them: {said}."
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


TABLE_CAPTIONS = {
    "aggregates": "Dev metric per cell (task, variant): mean, standard deviation and 95% "
    "interval of the mean over seeds (none below {min_n} seeds).",
    "delta_cells": "Paired difference variant - baseline per cell (same seed and training "
    "subset): mean, 95% interval and paired test; p (Holm) adjusted across each figure's cells. "
    "A comparison the adaptive seed rule governs (Test: sequential rule) has the rule's "
    "interval at its last look, adjusted for every look and comparison, and no p.",
    "recipe": "Fine-tuning recipe of each study, task and model.",
    "summary_per_layer": "Per-layer summary of the head re-initialization deltas vs baseline.",
    "summary_per_head": "Per-head summary of the head re-initialization deltas vs baseline.",
    "transfer": "Transfer matrix: mean dev metric per final task and intermediate task(s), "
    "and the paired difference vs direct fine-tuning.",
    "probes": "Linear-probe dev metric and hidden-state variability per layer (baseline runs).",
}
SIGNIFICANT_MARK, DECIDED_MARK = "*", "†"


def paper_tables(agg: pd.DataFrame, dcells: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The study's result table as papers print it, one per (model, train size, other varied
    config, chain): rows = variants, columns = tasks, cells `mean ± half-interval (n)` (the
    half-width of the 95% interval; no ± where n supports none), `*` where the paired test vs
    the baseline is significant (Holm p < 0.05), `†` where a sequential decision was made."""
    if agg.empty:
        return {}
    sig, decided = set(), set()
    cols = ["task", "model", "size", "factors", "chain", "label"]
    if not dcells.empty and "p_holm" in dcells:
        hit = dcells[dcells["p_holm"] < fg.SIGNIFICANT]
        sig = set(hit[cols].itertuples(index=False, name=None))
    if not dcells.empty:
        hit = dcells[stats.decided(dcells)]
        decided = set(hit[cols].itertuples(index=False, name=None))
    out = {}
    for (model, size, factors, chain), g in agg.groupby(
        ["model", "size", "factors", "chain"], sort=True, dropna=False
    ):
        g = g.assign(label=g["label"].where(~g["is_baseline"], "baseline"))
        g = g.drop_duplicates(["task", "label"])
        order = g.assign(k=g.get("scheme.k", pd.Series(dtype=float)).fillna(1e9))
        order = order.sort_values(["is_baseline", "k", "label"], ascending=[False, True, True])
        labels = list(dict.fromkeys(order["label"]))
        tasks = sorted(g["task"].unique())
        table = pd.DataFrame(index=labels, columns=tasks, dtype=object)
        for _, r in g.iterrows():
            text = f"{r['mean']:.3f}"
            if pd.notna(r["ci_low"]) and pd.notna(r["ci_high"]):
                text += f" ± {(r['ci_high'] - r['ci_low']) / 2:.3f}"
            text += f" ({int(r['n'])})"
            if (r["task"], model, size, factors, chain, r["label"]) in sig:
                text += SIGNIFICANT_MARK
            if (r["task"], model, size, factors, chain, r["label"]) in decided:
                text += DECIDED_MARK
            table.loc[r["label"], r["task"]] = text
        name = fg.slug("paper", model, size, factors, _via(chain))
        out[name] = table.fillna("--").rename_axis("label").reset_index()
    return out


def _paper_caption(report: Report, name: str) -> str:
    metrics = ", ".join(
        sorted({f"{t}: {m}" for t, m in report.runs[["task", "primary_metric"]].to_numpy()})
    )
    decided = (
        f"; {DECIDED_MARK} = decided by the sequential seed rule (decisions.json), and no "
        f"{SIGNIFICANT_MARK} on the comparisons it governs (their seeds were added after "
        "looking at earlier results, where a fixed-sample test does not hold)"
        if not report.decisions.empty
        else ""
    )
    return (
        f"Dev metric per variant and task ({metrics}): mean ± half-width of the 95% interval "
        f"over seeds (n seeds); no ± below {stats.MIN_N} seeds. {SIGNIFICANT_MARK} = paired "
        f"difference vs the baseline significant (Holm p < 0.05){decided}. "
        f"{_context(report.runs).strip()}"
    )


def _write_tables(report: Report) -> None:
    """Every table as CSV and, for the tables a paper prints, as a booktabs LaTeX table beside
    it (captioned and labelled); the wide per-run tables (runs, deltas) stay CSV only."""
    out = report.out_dir
    tables = {
        "aggregates": report.aggregates,
        "deltas": report.deltas,
        "delta_cells": report.delta_cells,
        **{f"summary_{k}": v for k, v in report.summaries.items()},
        **report.tables,
    }
    if not report.transfer.empty:
        tables["transfer"] = report.transfer
    if not report.probes.empty:
        tables["probes"] = report.probes
    report.files += write_table(report.runs, out / "runs.csv", latex=False)
    for name, df in tables.items():
        caption = TABLE_CAPTIONS.get(name, "").format(min_n=stats.MIN_N) or None
        if name.startswith("paper_"):
            caption = _paper_caption(report, name)
        elif name.startswith("head_grid_"):
            what = name.removeprefix("head_grid_").replace("_", " ")
            caption = f"Mean paired difference variant - baseline per layer and head ({what})."
        elif name.startswith("layer_curve_"):
            what = name.removeprefix("layer_curve_").replace("_", " ")
            caption = f"Layer curve points ({what}): dev metric per k; the baseline is k = L+1."
        paper = None
        if name == "decisions":
            caption, paper = decisions_caption(df), decisions_for_paper(df)
        latex = name != "deltas"
        report.files += write_table(
            df, out / f"{name}.csv", latex=latex, caption=caption, paper=paper
        )
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
    report.files += write_table(problems, out / "problems.csv", latex=False)
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
