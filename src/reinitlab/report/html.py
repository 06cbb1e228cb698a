"""report.html: one self-contained page (figures embedded as base64 PNG, no external files
needed to view it) with what was swept, what ran, the statistics used and every table."""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections import Counter
from pathlib import Path

import pandas as pd

from reinitlab.report import stats
from reinitlab.report.decisions import decisions_caption, decisions_for_paper
from reinitlab.report.io import write_text

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
figure{margin:1em 0 2em} figcaption{font-size:13px;color:#555;max-width:900px}
img{max-width:100%} .note{background:#fff6d5;padding:0.5em 1em;border-left:4px solid #e0b000}
.bad{color:#a00} code{background:#f4f4f4;padding:0 3px}
"""

CELL_COLS = ["task", "model", "size", "factors", "chain", "figure", "label"]  # a table row
AGG_COLS = [
    *CELL_COLS,
    "n",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "ci_method",
    "seeds",
]
DELTA_COLS = [
    *CELL_COLS,
    "n_pairs",
    "n_unpaired",
    "mean_delta",
    "std_delta",
    "ci_low",
    "ci_high",
    "ci_method",
    "test",
    "statistic",
    "p",
    "p_holm",
    "family_size",
]
TRANSFER_COLS = [
    "model",
    "size",
    "factors",
    "label",
    "task",
    "chain",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "better_than_direct",
    "n_pairs",
    "mean_delta",
    "delta_ci_low",
    "delta_ci_high",
    "test",
    "p",
    "p_holm",
]
RUN_COLS = [
    "study",
    "task",
    "model",
    "size",
    "chain",
    "label",
    "seed",
    "primary_metric",
    "primary",
    "metric_source",
    "best_epoch",
    "steps",
    "wall_time_s",
    "run_dir",
]
# Every dev metric a task reports (STS-B: Pearson and Spearman), shown beside the primary one.
METRIC_COLS = [f"final.val/{m}" for m in ("accuracy", "f1", "mcc", "pearson", "spearman", "exact")]
# What the page calls a column where the CSV's name is ambiguous: `seeds` lists seed values
# (a one-seed run reads "0", not a count), `size` is the training-set size.
PAGE_HEADERS = {
    "seeds": "seed values",
    "n_seeds": "seeds (count)",
    "size": "train examples",
    "wall_time_s": "wall time (s)",
    "best_epoch": "best epoch (1-based)",
    **{c: "dev " + c.rsplit("/", 1)[1] for c in METRIC_COLS},
}
PAGE_FORMATS = {"wall_time_s": "{:.1f}", "steps": "{:.0f}", "best_epoch": "{:.0f}"}


def _table(df: pd.DataFrame, cols: list[str] | None = None) -> str:
    if df is None or df.empty:
        return "<p><em>(none)</em></p>"
    if cols:
        df = df[[c for c in cols if c in df.columns]]
    df = df.loc[:, [c for c in df.columns if not (df[c].astype(str) == "").all()]]
    formatters = {
        PAGE_HEADERS.get(c, c): (lambda v, f=f: "–" if pd.isna(v) else f.format(v))
        for c, f in PAGE_FORMATS.items()
        if c in df
    }
    return df.rename(columns=PAGE_HEADERS).to_html(
        index=False,
        float_format=lambda v: f"{v:.4f}",
        formatters=formatters,
        na_rep="–",
        border=0,
    )


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _statistics_text(report) -> str:
    items = [
        "Compared value: the task's primary dev metric (<code>val/primary</code>), from the last "
        "validation (<code>final</code>), or the best one for runs trained with early stopping "
        "(column <code>metric_source</code>).",
        "Aggregates per cell (task, model, training-set size, other varied config, scheme "
        "variant): n, mean, standard deviation (n−1) and a 95% interval of the mean that is "
        f"valid at the cell's n (column <code>ci_method</code>): none below {stats.MIN_N} runs; "
        f"Student's t interval (scipy.stats.t) from {stats.MIN_N} to {stats.BOOTSTRAP_MIN_N - 1} "
        f"runs; from {stats.BOOTSTRAP_MIN_N} runs the percentile bootstrap (scipy.stats.bootstrap, "
        f"{report.n_resamples} resamples, fixed seed: the same sweep gives the same intervals), "
        "which is too narrow at small n.",
        "Paired deltas: each run minus the baseline run (reinit=none, or progressive k=L+1; "
        "pooler untouched) "
        "with the same task, model, seed and training subset (size and subset seed). A run "
        "without such a baseline is listed as unpaired, never matched to another seed.",
        f"Paired test per cell (column <code>test</code>): none below {stats.MIN_N} pairs (a "
        "t test with one degree of freedom is not evidence); the paired t test "
        f"(scipy.stats.ttest_rel) from {stats.MIN_N} to {stats.WILCOXON_MIN_N - 1} pairs; the "
        f"Wilcoxon signed-rank test from {stats.WILCOXON_MIN_N} pairs (below that it cannot "
        "reach p &lt; 0.05).",
        "Multiple comparisons: Holm–Bonferroni across the cells of one figure (column "
        "<code>family_size</code> = number of tests in that family); * in figures = Holm p &lt; 0.05.",
    ]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _header(report) -> list[str]:
    """Study, models and recipe: what a reader needs before any number."""
    runs = report.runs
    if runs.empty:
        return []
    studies = ", ".join(sorted({str(s) for s in runs["study"].dropna()})) or "(unnamed)"
    models = ", ".join(sorted({str(m) for m in runs["model"]}))
    tasks = ", ".join(sorted({str(t) for t in runs["task"]}))
    out = [
        f"<p><b>Study:</b> {html.escape(studies)} &nbsp; <b>Model:</b> {html.escape(models)} "
        f"&nbsp; <b>Tasks:</b> {html.escape(tasks)}</p>",
    ]
    recipe = report.tables.get("recipe")
    if recipe is not None and not recipe.empty:
        out += ["<h3>Recipe</h3>", _table(recipe)]
    return out


def write_html(report) -> Path:
    """Write `report.html` into the report dir, one self-contained page (PNGs inlined): run
    counts and problems, notes, statistics, figures, then the tables; returns its path.

    Long because it is one straight sequence of page sections; splitting it would scatter the
    page order.
    """
    col = report.collection
    kinds = Counter(p.kind for p in col.problems)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>reinitlab report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>reinitlab report</h1>",
        *_header(report),
        f"<p>Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} from "
        + ", ".join(f"<code>{html.escape(s['dir'])}</code>" for s in col.sweeps)
        + ".</p>",
        "<h2>Runs</h2>",
        f"<p><b>{len(col.records)}</b> done, <b class='bad'>{kinds.get('failed', 0)}</b> failed "
        f"(the job's last attempt ended without a result), <b class='bad'>{kinds.get('missing', 0)}</b> missing "
        f"(planned by the sweep, never started), <b class='bad'>{kinds.get('corrupt', 0)}</b> "
        f"unreadable records, {kinds.get('running', 0)} still running.</p>",
    ]
    if kinds.get("plan"):
        parts.append(
            f"<p class='bad'>The missing count is incomplete: the plan of {kinds['plan']} "
            "sweep(s) could not be read, so their jobs planned but never started are not "
            "counted (the reason is in the table below).</p>"
        )
    sweep_rows = [
        {
            "sweep dir": s["dir"],
            "swept": "; ".join(f"{k}={v}" for k, v in s["swept"].items()) or "(no multirun.yaml)",
            "planned jobs": (
                s["planned"]
                if s["planned"] is not None
                else "unknown: its plan could not be read"
                if s.get("plan_error")
                else "unknown"
            ),
            "job dirs": s.get("job_dirs"),
        }
        for s in col.sweeps
    ]
    parts += ["<h3>What was swept</h3>", _table(pd.DataFrame(sweep_rows))]
    if not report.runs.empty:
        seen = report.runs.groupby(["task", "model", "size"]).agg(
            schemes=("label", lambda s: ", ".join(sorted(set(map(str, s))))),
            seeds=("seed", lambda s: ", ".join(map(str, sorted(set(s))))),
            n_seeds=("seed", "nunique"),
            runs=("seed", "size"),
        )
        parts.append(_table(seen.reset_index()))
    if col.problems:
        parts += [
            "<h3 class='bad'>Failed, missing and unreadable runs and plans</h3>",
            _table(
                pd.DataFrame(
                    [
                        {
                            "kind": p.kind,
                            "where": p.where,
                            "overrides": " ".join(p.overrides),
                            "reason": p.reason,
                        }
                        for p in col.problems
                    ]
                )
            ),
        ]
    if report.notes:
        parts.append(
            "<h2>Notes</h2>"
            + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in report.notes)
        )
    parts += ["<h2>Statistics used</h2>", _statistics_text(report)]
    if report.figures:
        parts.append("<h2>Figures</h2>")
        for f in report.figures:
            vector = [Path(f[k]).relative_to(report.out_dir) for k in ("pdf", "svg")]
            parts.append(
                f"<figure><h3>{html.escape(f['title'])}</h3>{_img(f['png'])}<figcaption>"
                f"{html.escape(f['caption'])} (vector: "
                + ", ".join(f"<code>{html.escape(str(v))}</code>" for v in vector)
                + ")</figcaption></figure>"
            )
    for name, table in report.tables.items():
        if name.startswith("paper_"):
            parts += [
                f"<h2>Paper table {html.escape(name.removeprefix('paper_'))}</h2>",
                "<p>Mean ± half-width of the 95% interval over seeds (n seeds); * = paired "
                "difference vs the baseline significant (Holm p &lt; 0.05); † = decided by the "
                "sequential seed rule, whose comparisons get no * (their seeds were added after "
                "looking at earlier results, where a fixed-sample test does not hold) "
                f"(<code>{html.escape(name)}.csv</code>, <code>.tex</code>)."
                "</p>",
                _table(table),
            ]
    if not report.decisions.empty:
        parts += [
            "<h2>Decisions of the sequential seed rule</h2>",
            f"<p>{html.escape(decisions_caption(report.decisions))} (<code>decisions.csv</code>, "
            "<code>.tex</code>).</p>",
            _table(decisions_for_paper(report.decisions)),
        ]
    parts += ["<h2>Aggregates</h2>", _table(report.aggregates, AGG_COLS)]
    parts += ["<h2>Paired deltas vs baseline</h2>", _table(report.delta_cells, DELTA_COLS)]
    if not report.transfer.empty:
        parts += [
            "<h2>Transfer matrix (intermediate tasks)</h2>",
            "<p>Per final task and chain of intermediate tasks (none = direct fine-tuning): mean "
            "and 95% CI over seeds; delta vs direct fine-tuning paired by seed and training "
            "subset, with the paired test and Holm's correction across each matrix.</p>",
            _table(report.transfer, TRANSFER_COLS),
        ]
    if not report.probes.empty:
        parts += [
            "<h2>Probing per layer (baseline runs)</h2>",
            "<p>Linear-probe dev metric and hidden-state variability per layer (0 = embeddings), "
            "before and after fine-tuning, mean over the baseline runs; Spearman ρ between the "
            "pretrained probe metric of layer ℓ and the drop when re-initializing from k = ℓ.</p>",
            _table(report.probes),
        ]
    for name, table in report.tables.items():
        if name.startswith("head_grid_"):
            parts += [
                f"<h2>Head grid {html.escape(name.removeprefix('head_grid_'))}</h2>",
                "<p>Mean paired delta vs baseline per layer and head "
                f"(<code>{html.escape(name)}.csv</code>, <code>.tex</code>).</p>",
                _table(table),
            ]
    for name, table in report.summaries.items():
        what = "layer" if name == "per_layer" else "head"
        parts += [
            f"<h2>Per-{what} summary of head-reinit deltas</h2>",
            "<p>count, mean, std, min, quartiles and max of the per-run deltas vs baseline, "
            f"grouped by {what} (1-based).</p>",
            _table(table),
        ]
    metric_cols = [c for c in METRIC_COLS if c in report.runs and report.runs[c].notna().any()]
    parts += ["<h2>All runs</h2>", _table(report.runs, RUN_COLS[:-4] + metric_cols + RUN_COLS[-4:])]
    files = ", ".join(f"<code>{html.escape(p.name)}</code>" for p in report.files)
    parts.append(f"<p>Tables beside this page: {files}.</p></body></html>")
    path = report.out_dir / "report.html"
    return write_text(path, "\n".join(parts))
