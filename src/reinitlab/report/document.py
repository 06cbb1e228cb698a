"""report.tex: the whole study as one standalone LaTeX document. It `\\input`s every table the
report wrote and includes every figure's PDF, so `pdflatex report.tex` in the report folder
gives the study as a PDF, and a paper can copy any of its floats as they are."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from reinitlab.report.io import latex_escape, write_text

# the text width of the document below (A4, 2 cm margins), in PostScript points
TEXT_WIDTH_PT = (21.0 - 4.0) / 2.54 * 72
# floats LaTeX holds before it must place them; flush well before its limit of 18
FLOATS_PER_PAGE_BREAK = 8

PREAMBLE = r"""\documentclass[10pt,a4paper]{article}
\usepackage[margin=2cm]{geometry}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{amssymb}
\setcounter{topnumber}{4}
\setcounter{totalnumber}{6}
\renewcommand{\topfraction}{0.9}
\renewcommand{\textfraction}{0.05}
\renewcommand{\floatpagefraction}{0.8}
\sloppy
"""


def pdf_width_pt(path: Path) -> float | None:
    """A one-page PDF's width from its MediaBox (matplotlib writes it in plain text)."""
    match = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+[-\d.]+\s+([-\d.]+)", path.read_bytes())
    return float(match.group(2)) - float(match.group(1)) if match else None


def _figure(fig: dict, out_dir: Path, number: int) -> str:
    pdf = Path(fig["pdf"])
    width = pdf_width_pt(pdf)
    # natural size (the figure's fonts as drawn) unless wider than the text
    size = "[width=\\linewidth]" if width is None or width > TEXT_WIDTH_PT else ""
    rel = pdf.relative_to(out_dir).as_posix()
    caption = latex_escape(f"{fig['title']}. {fig['caption']}")
    return (
        "\\begin{figure}[tbp]\n\\centering\n"
        f"\\includegraphics{size}{{{rel}}}\n"
        f"\\caption{{{caption}}}\n\\label{{fig:{number}}}\n\\end{{figure}}\n"
    )


def report_tex(report) -> str:
    """The document's text: title, what ran, notes, every figure, then every LaTeX table."""
    runs = report.runs
    studies = sorted({str(s) for s in runs["study"].dropna()}) if "study" in runs else []
    title = "reinitlab report" + (": " + ", ".join(studies) if studies else "")
    kinds = Counter(p.kind for p in report.collection.problems)
    body = [
        PREAMBLE,
        f"\\title{{{latex_escape(title)}}}\n\\date{{}}\n\\begin{{document}}\n\\maketitle\n",
        "\\section*{Runs}\n"
        + latex_escape(
            f"{len(report.collection.records)} runs done, {kinds.get('failed', 0)} failed, "
            f"{kinds.get('missing', 0)} missing, {kinds.get('running', 0)} still running."
        )
        + "\n",
    ]
    if report.notes:
        body.append(
            "\\section*{Notes}\n\\begin{itemize}\n"
            + "".join(f"\\item {latex_escape(n)}\n" for n in report.notes)
            + "\\end{itemize}\n"
        )
    if report.figures:
        body.append("\\section*{Figures}\n")
        for i, fig in enumerate(report.figures, start=1):
            body.append(_figure(fig, report.out_dir, i))
            if i % FLOATS_PER_PAGE_BREAK == 0:
                body.append("\\clearpage\n")
        body.append("\\clearpage\n")
    tables = sorted(p for p in report.files if p.suffix == ".tex" and p.parent == report.out_dir)
    if tables:
        body.append("\\section*{Tables}\n")
        paper_first = sorted(tables, key=lambda p: (not p.stem.startswith("paper_"), p.stem))
        for i, path in enumerate(paper_first, start=1):
            body.append(f"\\input{{{path.name}}}\n")
            if i % FLOATS_PER_PAGE_BREAK == 0:
                body.append("\\clearpage\n")
    body.append("\\end{document}\n")
    return "".join(body)


def write_report_tex(report) -> Path:
    """Write `report.tex` into the report folder (after its tables and figures); its path."""
    return write_text(report.out_dir / "report.tex", report_tex(report))
