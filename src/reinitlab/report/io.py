"""Report files: atomic output (write to a temp name beside the target, then rename, so an
interrupted report never leaves a half-written table, figure or page behind) and every table
as CSV plus a booktabs LaTeX table beside it, ready to `\\input` into a paper.

The atomic implementation is `reinitlab.atomic` (one for the whole project, torch-free on
import); this module keeps the names the report code imports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reinitlab.atomic import atomic_path, write_text

__all__ = ["atomic_path", "latex_table", "write_table", "write_text"]

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
    "<": r"$<$",
    ">": r"$>$",
}
# Columns that are paths or flattened configs: in the CSV, not in a paper table.
_NOT_FOR_PAPER = ("run_dir", "sweep_dir", "baseline_runs", "path")
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


def latex_table(df: pd.DataFrame, index: bool = False) -> str:
    """`df` as a booktabs tabular (pandas Styler.to_latex: toprule/midrule/bottomrule),
    floats at LATEX_DIGITS decimals, missing values as `--`, text LaTeX-escaped; ASCII only,
    so it compiles with plain pdflatex and `\\usepackage{booktabs}`."""
    frame = df.copy()
    if index:
        frame = frame.reset_index()
    frame.columns = [str(c) for c in frame.columns]
    for c in frame.columns:
        if frame[c].dtype == bool:
            frame[c] = frame[c].map({True: "yes", False: "no"})
    styler = (
        frame.style.hide(axis="index")
        .format(precision=LATEX_DIGITS, na_rep="--", escape="latex")
        .format_index(escape="latex", axis=1)
    )
    text = styler.to_latex(hrules=True, column_format="l" * len(frame.columns))
    for char, tex in _LATEX_TEXT.items():
        text = text.replace(char, tex)
    return text.encode("ascii", "replace").decode("ascii")


def write_table(
    df: pd.DataFrame, csv_path: Path, latex: bool = True, columns: list[str] | None = None
) -> list[Path]:
    """Write `df` to `csv_path` and (unless `latex` is False) its paper columns (or `columns`)
    as a booktabs table to the same name with `.tex`; both atomically. Returns the paths."""
    csv_path = Path(csv_path)
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    paths = [csv_path]
    if latex:
        cols = columns if columns is not None else paper_columns(df)
        cols = [c for c in cols if c in paper_columns(df)] if not df.empty else list(df.columns)
        tex = csv_path.with_suffix(".tex")
        paths.append(write_text(tex, latex_table(df[cols])))
    return paths
