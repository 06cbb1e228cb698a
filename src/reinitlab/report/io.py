"""Report files: atomic output (write to a temp name beside the target, then rename, so an
interrupted report never leaves a half-written table, figure or page behind) and every table
as CSV plus a booktabs LaTeX table beside it, ready to `\\input` into a paper.

The atomic implementation is `reinitlab.atomic` (one for the whole project, torch-free on
import); this module keeps the names the report code imports."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from reinitlab.atomic import atomic_path, write_text

__all__ = ["atomic_path", "header", "latex_escape", "latex_table", "write_table", "write_text"]

LATEX_DIGITS = 4
# Characters the report's labels use that pdflatex's default (OT1) encoding lacks or
# mis-draws ('<' prints as an inverted exclamation mark), as text-mode-safe LaTeX.
_LATEX_TEXT = {
    "→": r"$\rightarrow$",
    "·": r"$\cdot$",
    "Δ": r"$\Delta$",
    "ρ": r"$\rho$",
    "θ": r"$\theta$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "±": r"$\pm$",
    "–": "--",
    "−": "-",
    "‖": r"$\|$",
    "▲": r"$\blacktriangle$",
    "†": r"$^\dagger$",
    "<": r"$<$",
    ">": r"$>$",
}
# Columns that are paths or flattened configs, or repeat what another column or the caption
# says (the variant's label names its scheme and figure; the caption names the interval
# method and test): in the CSV, not in a paper table.
_NOT_FOR_PAPER = (
    "run_dir",
    "sweep_dir",
    "sweep_cell",
    "n_left_out",  # said in the report's notes where it is not 0
    "baseline_runs",
    "path",
    "scheme",
    "figure",
    "variant",
    "is_baseline",
    "head_layer",
    "head_index",
    "num_layers",
    "seeds",
    "statistic",
    "family_size",
)
# A paper's column headers for the report's column names (others: `_` as spaces).
HEADERS = {
    "task": "Task",
    "model": "Model",
    "size": "Train examples",
    "factors": "Also varied",
    "chain": "Intermediate tasks",
    "label": "Variant",
    "n": "n",
    "mean": "Mean",
    "std": "SD",
    "ci_low": "95% CI low",
    "ci_high": "95% CI high",
    "ci_method": "Interval",
    "primary_metric": "Metric",
    "n_pairs": "Pairs",
    "n_unpaired": "Unpaired",
    "mean_delta": "Mean Δ",
    "std_delta": "SD Δ",
    "test": "Test",
    "p": "p",
    "p_holm": "p (Holm)",
    "decision": "Decision",
    "delta_ci_low": "Δ 95% CI low",
    "delta_ci_high": "Δ 95% CI high",
    "better_than_direct": "Above direct",
    "k": "k",
    "layer": "Layer",
    "runs": "Runs",
    "study": "Study",
    "count": "Count",
}
# Columns that say what a row is about (not results): said in the caption when all rows agree.
_DESCRIBING = {
    "task",
    "model",
    "size",
    "factors",
    "chain",
    "primary_metric",
    "ci_method",
    "test",
    "study",
}
# Text wider than this is set in a wrapping column, so no table runs off the page.
_WRAP_CHARS = 24
_WRAP_CM = 3.6
# Rough width of a \\small table (points per character, padding per column) and the widest a
# table may be before it is scaled to the text width (17 cm), so no table runs off the page.
_PT_PER_CHAR, _PT_PER_COLUMN, _MAX_WIDTH_PT = 4.6, 12.0, 480.0


def _estimated_width_pt(frame: pd.DataFrame, fmt: str) -> float:
    width = 0.0
    for c, spec in zip(frame.columns, re.findall(r"p\{[^}]*\}|[lrc]", fmt), strict=True):
        if spec.startswith("p"):
            width += _WRAP_CM / 2.54 * 72
            continue
        cells = frame[c].map(lambda v: f"{v:.{LATEX_DIGITS}f}" if isinstance(v, float) else str(v))
        width += _PT_PER_CHAR * max([len(header(str(c))), *cells.str.len()])
    return width + _PT_PER_COLUMN * len(frame.columns)


_NOT_FOR_PAPER_PREFIX = ("config.", "final.", "best.", "seeds.", "scheme.")


def paper_columns(df: pd.DataFrame) -> list[str]:
    """The columns a LaTeX table keeps: no paths, flattened configs or all-empty columns."""
    keep = []
    for c in df.columns:
        name = str(c)
        if name in _NOT_FOR_PAPER or name.startswith(_NOT_FOR_PAPER_PREFIX):
            continue
        if df[c].isna().all() or (df[c].astype(str) == "").all():
            continue
        keep.append(c)
    return keep


def header(column: str) -> str:
    """The human header a paper table prints for a report column (`ci_low` -> `95% CI low`)."""
    return HEADERS.get(column, column.replace("_", " "))


def latex_escape(text: str) -> str:
    """Plain text (a caption) as pdflatex-safe ASCII LaTeX: specials escaped, the report's
    symbols as math."""
    specials = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    out = "".join(specials.get(ch, ch) for ch in str(text))
    for char, tex in {**_LATEX_TEXT, "ρ": r"$\rho$", "ℓ": r"$\ell$"}.items():
        out = out.replace(char, tex)
    return out.encode("ascii", "replace").decode("ascii")


def _column_format(frame: pd.DataFrame) -> str:
    """Numbers right-aligned, short text left, long text in a wrapping column."""
    spec = []
    for c in frame.columns:
        numbers = pd.to_numeric(frame[c], errors="coerce")  # numbers kept as text, too
        if frame[c].dtype != bool and numbers.notna().sum() == frame[c].notna().sum() > 0:
            spec.append("r")
        elif frame[c].astype(str).str.len().max() > _WRAP_CHARS:
            spec.append(f"p{{{_WRAP_CM:.1f}cm}}")
        else:
            spec.append("l")
    return "".join(spec)


def latex_table(
    df: pd.DataFrame, index: bool = False, caption: str | None = None, label: str | None = None
) -> str:
    """`df` as a booktabs table (pandas Styler.to_latex: toprule/midrule/bottomrule) with a
    paper's headers, numbers right-aligned at LATEX_DIGITS decimals, missing values as `--`,
    text LaTeX-escaped; in a `table` float with `caption` and `label` when given. ASCII only,
    so it compiles with plain pdflatex, `booktabs` and `amssymb`."""
    frame = df.copy()
    if index:
        frame = frame.reset_index()
    frame.columns = [str(c) for c in frame.columns]
    for c in frame.columns:
        if frame[c].dtype == bool:
            frame[c] = frame[c].map({True: "yes", False: "no"})
    fmt = _column_format(frame)
    too_wide = _estimated_width_pt(frame, fmt) > _MAX_WIDTH_PT
    frame.columns = [header(c) for c in frame.columns]
    styler = (
        frame.style.hide(axis="index")
        .format(precision=LATEX_DIGITS, na_rep="--", escape="latex")
        .format_index(escape="latex", axis=1)
    )
    text = styler.to_latex(hrules=True, column_format=fmt)
    for char, tex in _LATEX_TEXT.items():
        text = text.replace(char, tex)
    if too_wide:
        text = "\\resizebox{\\linewidth}{!}{%\n" + text.rstrip("\n") + "%\n}\n"
    if caption is not None or label is not None:
        head = "\\begin{table}[htbp]\n\\centering\n\\small\n"
        if caption is not None:
            head += f"\\caption{{{latex_escape(caption)}}}\n"
        if label is not None:
            head += f"\\label{{{label}}}\n"
        text = head + text + "\\end{table}\n"
    return text.encode("ascii", "replace").decode("ascii")


def _cell_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def write_table(
    df: pd.DataFrame,
    csv_path: Path,
    latex: bool = True,
    columns: list[str] | None = None,
    caption: str | None = None,
    paper: pd.DataFrame | None = None,
) -> list[Path]:
    """Write `df` to `csv_path` and (unless `latex` is False) its paper columns (or `columns`)
    as a booktabs table to the same name with `.tex` (labelled `tab:<name>`, captioned
    `caption` or the name); both atomically. `paper`, when given, is what the LaTeX table
    shows instead: a table whose CSV keeps raw numbers for programs but whose printed form is
    composed for people (intervals as `[low, high]`). Returns the paths."""
    csv_path = Path(csv_path)
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    paths = [csv_path]
    if not latex:
        return paths
    caption = caption or csv_path.stem
    if paper is None:
        cols = columns if columns is not None else paper_columns(df)
        cols = [c for c in cols if c in paper_columns(df)] if not df.empty else list(df.columns)
        # a describing column with one value in every row is said once, in the caption
        # (results stay in the table, however alike)
        same = [
            c for c in cols if c in _DESCRIBING and len(df) > 1 and df[c].astype(str).nunique() == 1
        ]
        if same and len(same) < len(cols):
            said = "; ".join(f"{header(str(c))} {_cell_text(df[c].iloc[0])}" for c in same)
            caption += f" Every row: {said}."
            cols = [c for c in cols if c not in same]
        paper = df[cols]
    text = latex_table(paper, caption=caption, label="tab:" + csv_path.stem)
    paths.append(write_text(csv_path.with_suffix(".tex"), text))
    return paths
