"""What a paper takes from a report: readable labels (no config dicts), the head grid of paired
deltas, honest intervals and marks by sample size, recipe captions, and LaTeX tables that hold
the CSVs' numbers and compile."""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import statistics
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as sps

from reinitlab.decide.study import DECISIONS_FILENAME
from reinitlab.report.build import build_report
from reinitlab.report.io import LATEX_DIGITS
from reinitlab.report.io import header as human_header
from tests.test_report import (
    L,
    head_value,
    make_heads_sweep,
    make_progressive_sweep,
    progressive_scheme,
    record,
    write_job,
)

RAW_CONFIG = re.compile(r'\{\s*"|\{&quot;|"\s*:\s*(null|false|true|"|\d)')
FIGURE_MARKS = ("ci-bars", "ci-baseline", "paired-ci", "significance")


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    prog = make_progressive_sweep(root)
    heads = make_heads_sweep(root, with_deltas=True)
    out = root / "report"
    return out, build_report([prog, heads], out, n_resamples=500, seed=0)


def svg_ids(svg: Path) -> set[str]:
    return {el.get("id") for el in ET.parse(svg).iter() if el.get("id")}


def assert_no_raw_config(out: Path, report) -> None:
    """No config dict in the page, in any table's label columns, nor in a figure's text."""
    page = (out / "report.html").read_text()
    assert not RAW_CONFIG.search(page), RAW_CONFIG.search(page).group(0)
    for csv in out.glob("*.csv"):
        df = pd.read_csv(csv)
        for col in ("label", "variant", "figure", "factors"):
            if col in df:
                bad = df[col].dropna().astype(str)
                assert not bad.str.contains("{", regex=False).any(), (csv.name, col)
    for fig in report.figures:
        assert "{" not in fig["title"] and "{" not in fig["caption"], fig["title"]
        assert not RAW_CONFIG.search(Path(fig["svg"]).read_text())


def test_labels_not_config_dicts(paper):
    out, report = paper
    assert_no_raw_config(out, report)
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs.loc[runs["scheme"] == "progressive", "label"]) == {
        "k=1",
        "k=2",
        "k=3",
        "baseline",
    }
    assert {"L1H1", "L3H2"} <= set(runs["label"])
    assert set(runs["figure"]) == {"progressive", "heads", "none"}
    # ticks and tables name layers and heads as the papers do
    grid = pd.read_csv(out / "head_grid_cola_tiny_all_heads.csv")
    assert list(grid["layer"]) == ["Layer 1", "Layer 3"] and list(grid.columns[1:]) == ["H1", "H2"]
    svg = (out / "figures" / "heads_cola_tiny_all_heads.svg").read_text()
    movement = (out / "figures" / "movement_cola_tiny_all.svg").read_text()
    assert "Layer 3" in svg and "H2" in svg and "Layer 2" in movement  # text kept as text


def test_head_grid_equals_hand_computed_paired_deltas(paper):
    out, report = paper
    grid = pd.read_csv(out / "head_grid_cola_tiny_all_heads.csv").set_index("layer")
    for layer in (1, 3):
        for head in (1, 2):
            # each seed's run minus the baseline run of the same seed (reinit=none)
            d = [head_value(layer, head, s) - (head_value(0, 0, s) + 0.01) for s in range(6)]
            assert grid.loc[f"Layer {layer}", f"H{head}"] == pytest.approx(statistics.mean(d))
    (fig,) = [f for f in report.figures if f.get("kind") == "head_grid"]
    assert "head_grid_cola_tiny_all_heads.csv" in fig["caption"]
    # 6 seeds: Wilcoxon p = 1/32 at best, Holm over 4 cells -> nothing is significant, no star
    assert "significance" not in svg_ids(Path(fig["svg"]))
    per_layer = pd.read_csv(out / "summary_per_layer.csv")
    assert list(per_layer["label"]) == ["Layer 1", "Layer 3"]
    assert list(per_layer.columns[-8:]) == [
        "count",
        "mean",
        "std",
        "min",
        "25%",
        "50%",
        "75%",
        "max",
    ]


def noise(seed: int, k: int) -> float:
    return 0.003 * (((seed + 1) * (k + 2) * 3) % 7)


def progressive_study(root: Path, seeds, tasks=("rte",)) -> Path:
    """k=1..3 and the baseline (k=4) per seed; re-initializing costs 0.1 per layer, seed
    noise is small, so from 3 seeds every k differs significantly from the baseline."""
    sweep = root / f"study_{len(seeds)}"
    num = 0
    for task in tasks:
        for seed in seeds:
            for k in (1, 2, 3, 4):
                value = 0.8 - 0.1 * (L + 1 - k) + noise(seed, k)
                rec = record(task, progressive_scheme(k), seed, round(value, 6))
                rec["config"]["optim"]["lr"] = 1e-4
                rec["config"]["data"].update(batch_size=16, max_length=64)
                write_job(sweep, num, [f"task={task}", f"reinit.k={k}", f"seed={seed}"], rec)
                num += 1
    return sweep


def test_two_seeds_draw_no_interval_or_star_and_say_why(tmp_path):
    sweep = progressive_study(tmp_path, seeds=(0, 1))
    report = build_report([sweep], tmp_path / "out", n_resamples=500)
    cells = report.delta_cells
    assert cells["p"].isna().all() and cells["ci_low"].isna().all()
    assert report.aggregates["ci_low"].isna().all()
    (fig,) = [f for f in report.figures if f.get("kind") == "layer_curve"]
    assert not svg_ids(Path(fig["svg"])) & set(FIGURE_MARKS)
    assert "No intervals or significance marks" in fig["caption"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Every cell has fewer than 3 seeds" in page and "one degree of freedom" in page


def test_three_seeds_get_t_intervals_paired_t_tests_and_marks(tmp_path):
    sweep = progressive_study(tmp_path, seeds=(0, 1, 2))
    report = build_report([sweep], tmp_path / "out", n_resamples=500)
    cells = report.delta_cells.set_index("label")
    for k in (1, 2, 3):
        run = [round(0.8 - 0.1 * (L + 1 - k) + noise(s, k), 6) for s in (0, 1, 2)]
        base = [round(0.8 + noise(s, 4), 6) for s in (0, 1, 2)]
        d = [a - b for a, b in zip(run, base, strict=True)]
        row = cells.loc[f"k={k}"]
        assert row["test"] == "paired t" and row["p"] == pytest.approx(
            sps.ttest_rel(run, base).pvalue
        )
        lo, hi = sps.t.interval(0.95, 2, statistics.mean(d), sps.sem(d))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), abs=1e-9)
        assert row["ci_method"] == "t" and row["p_holm"] < 0.05
    (fig,) = [f for f in report.figures if f.get("kind") == "layer_curve"]
    assert set(FIGURE_MARKS) <= svg_ids(Path(fig["svg"]))
    assert "Student t interval" in fig["caption"] and "paired t" in fig["caption"]
    # the recipe and the model in every caption and in the page header
    for f in report.figures:
        assert "model tiny" in f["caption"] and "lr 0.0001" in f["caption"], f["title"]
        assert "batch 16" in f["caption"] and "max length 64" in f["caption"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<b>Study:</b> study_3" in page and "<h3>Recipe</h3>" in page


def test_layer_curve_has_the_baseline_as_its_k_equals_L_plus_1_point(tmp_path):
    sweep = progressive_study(tmp_path, seeds=(0, 1, 2), tasks=("rte", "cola"))
    report = build_report([sweep], tmp_path / "out", n_resamples=500)
    kinds = [f.get("kind") for f in report.figures]
    assert kinds.count("layer_curve") == 2 and kinds.count("layer_curves_all") == 1
    (both,) = [f for f in report.figures if f.get("kind") == "layer_curves_all"]
    svg = Path(both["svg"]).read_text()
    assert "k=4" in svg and "(baseline)" in svg and "rte (mcc)" in svg and "cola (mcc)" in svg
    ids = svg_ids(Path(both["svg"]))
    assert {"ci-baseline", "ci-bars", "paired-ci"} <= ids and "ci-band" not in ids


# --- LaTeX ------------------------------------------------------------------------------------


def latex_rows(tex: str) -> tuple[list[str], list[list[str]]]:
    body = tex.split("\\toprule", 1)[1].split("\\bottomrule", 1)[0]
    head, rows = body.split("\\midrule", 1)
    split = [[c.strip() for c in line.rstrip().removesuffix("\\\\").split(" & ")]
             for line in rows.strip().splitlines()]  # fmt: skip
    header = [c.strip() for c in head.strip().removesuffix("\\\\").split(" & ")]
    return [h.replace("\\_", "_").replace("\\%", "%") for h in header], split


def test_latex_tables_hold_the_csv_numbers(paper):
    out, _ = paper
    tex_files = sorted(p for p in out.glob("*.tex") if p.name != "report.tex")
    names = {p.stem for p in tex_files}
    assert {"aggregates", "delta_cells", "summary_per_layer", "summary_per_head", "recipe"} <= names
    assert "head_grid_cola_tiny_all_heads" in names
    # the wide per-run tables stay CSV only
    assert not {"runs", "deltas"} & names and (out / "runs.csv").is_file()
    checked = 0
    for tex_path in tex_files:
        tex = tex_path.read_text()
        assert tex.isascii() and "\\toprule" in tex and "\\bottomrule" in tex
        assert f"\\label{{tab:{tex_path.stem}}}" in tex and "\\caption{" in tex
        header, rows = latex_rows(tex)
        csv = pd.read_csv(tex_path.with_suffix(".csv"))
        by_header = {human_header(c): c for c in csv.columns}
        assert len(rows) == len(csv), tex_path.name
        assert not any("_" in h for h in header), header  # human headers, no snake_case
        for j, head in enumerate(header):
            col = by_header[head.replace("$\\Delta$", "Δ")]
            if pd.api.types.is_numeric_dtype(csv[col]) and csv[col].dtype != bool:
                spec = tex.split("\\begin{tabular}{", 1)[1].split("}\n", 1)[0]
                assert spec.replace("p{3.2cm}", "p")[j] == "r", (tex_path.name, col)
            if not pd.api.types.is_float_dtype(csv[col]):
                continue
            for i, value in enumerate(csv[col]):
                cell = rows[i][j]
                if math.isnan(value):
                    assert cell == "--"
                else:
                    assert float(cell) == pytest.approx(value, abs=0.6 * 10**-LATEX_DIGITS)
                    checked += 1
    assert checked > 80  # columns with one value in every row are in the caption instead


# text every figure PDF must hold as text (not outlines), by the figure's file-name prefix
AXIS_TEXT = {
    "layers_": ("dev", "k: encoder layers k..L re-initialized", "variant − baseline"),
    "heads_": ("attention head", "encoder layer", "variant − baseline"),
    "head_movement_": ("attention head", "encoder layer"),
    "movement_": ("whole layer", "attention only", "feed-forward only"),
    "probe_": ("linear probe dev", "layer ℓ (0 = embeddings)"),
    "bars_": ("variant − baseline",),
    "datasize_": ("training examples",),
    "transfer_": ("intermediate task(s)", "final task"),
}


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: apt-get install -y poppler-utils (.ci/run does)")
    return path


def compile_report_tex(out: Path) -> Path:
    """`pdflatex report.tex` in the report folder, as the README says; the PDF's path."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.fail(
            "pdflatex is not installed: apt-get install -y texlive-latex-base "
            "texlive-latex-recommended (.ci/run installs it)"
        )
    done = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return out / "report.pdf"


def assert_report_prints(out: Path) -> None:
    """report.tex compiles with no overfull box; every font of the document and of each
    figure PDF is embedded; each figure PDF holds its axis labels as text; PNGs at 300 dpi."""
    pdf = compile_report_tex(out)
    log = (out / "report.log").read_text(errors="replace")
    assert "Overfull" not in log, log[log.index("Overfull") - 200 : log.index("Overfull") + 400]
    tex = (out / "report.tex").read_text()
    figures = sorted((out / "figures").glob("*.pdf"))
    for fig in figures:
        assert f"{{figures/{fig.name}}}" in tex
    for table in out.glob("*.tex"):
        if table.name != "report.tex":
            assert f"\\input{{{table.name}}}" in tex
    pdfs = [pdf, *figures]
    for path in pdfs:
        fonts = subprocess.run(
            [poppler("pdffonts"), str(path)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[2:]
        assert fonts, path.name  # text is text: there are fonts at all
        for line in fonts:  # columns ... emb sub uni object ID: the 5th from the right
            assert line.split()[-5] == "yes", (path.name, line)
    assert len(figures) >= 2
    for fig in figures:
        name = fig.name
        prefix = next(p for p in sorted(AXIS_TEXT, key=len, reverse=True) if name.startswith(p))
        text = subprocess.run(
            [poppler("pdftotext"), str(fig), "-"], capture_output=True, text=True, check=True
        ).stdout
        for label in AXIS_TEXT[prefix]:
            assert label in text, (name, label, text[:500])
        # PNG stores pixels per metre: 300 dpi reads back as 299.9994
        assert min(round(v) for v in png_dpi(fig.with_suffix(".png"))) >= 300, fig.name
    # the document's pages: rendered, each a real page with content
    pages = subprocess.run(
        [poppler("pdftoppm"), "-r", "40", "-png", str(pdf), str(out / "page")],
        capture_output=True,
        text=True,
    )
    assert pages.returncode == 0 and len(list(out.glob("page-*.png"))) >= 2


@pytest.mark.slow
def test_latex_tables_compile_with_pdflatex(paper, tmp_path):
    """Each table compiles on its own (as a paper inputs it), and report.tex gives the
    whole study as a PDF a journal takes."""
    out, _ = paper
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.fail(
            "pdflatex is not installed: apt-get install -y texlive-latex-base "
            "texlive-latex-recommended (.ci/run installs it)"
        )
    for tex in sorted(out.glob("*.tex")):
        if tex.name == "report.tex":
            continue
        doc = tmp_path / f"doc_{tex.stem}.tex"
        doc.write_text(
            "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{amssymb}\n"
            "\\usepackage{graphicx}\n"
            f"\\begin{{document}}\n\\input{{{tex}}}\n\\end{{document}}\n"
        )
        done = subprocess.run(
            [pdflatex, "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (tex.name, done.stdout[-2000:])
        assert (tmp_path / f"doc_{tex.stem}.pdf").stat().st_size > 1000
    assert_report_prints(out)


def test_report_wandb_logs_head_grid_layer_curve_and_tables(tmp_path, monkeypatch):
    import json

    from reinitlab.cli import main as cli_main
    from tests.helpers.wandb_reader import find_run_files, read_run

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    heads = make_heads_sweep(tmp_path, seeds=range(3))
    prog = make_progressive_sweep(tmp_path)
    out = tmp_path / "rep"
    args = ["report", str(heads), str(prog), "--out", str(out), "--bootstrap", "200", "--wandb"]
    assert cli_main(args) == 0
    (run_file,) = find_run_files(out)
    run = read_run(run_file)
    assert run["group"] == "heads" and run["config"]["study"] == "heads"  # the first study
    logged = run["history"][0]
    files = run_file.parent / "files"
    for name in ("head_grid_cola_tiny_all_heads", "layer_curve_rte_tiny_all_progressive"):
        entry = logged[f"report/{name}"]
        assert entry["_type"] == "table-file"
        table = json.loads((files / entry["path"]).read_text())
        csv = pd.read_csv(out / f"{name}.csv")
        assert table["columns"] == list(csv.columns)
        for got, want in zip(table["data"], csv.itertuples(index=False), strict=True):
            for g, w in zip(got, want, strict=True):
                if isinstance(w, float):
                    assert g == pytest.approx(w, nan_ok=True)
                else:
                    assert g == (w if isinstance(w, int) else str(w))
    assert logged["curves/layer_curve_rte_tiny_all_progressive_table"]["_type"] == "table-file"
    assert logged["report/summary_per_layer"]["_type"] == "table-file"
    assert logged["report/recipe"]["_type"] == "table-file"
    assert any(k.startswith("figures/heads_") for k in logged)


def test_head_grids_of_a_report_share_one_zero_centred_scale(tmp_path):
    """Two tasks' head grids, one with small and one with large deltas: the small grid's
    colour bar spans the large one's range."""
    sweep = tmp_path / "heads2"
    size = {"cola": 0.01, "rte": 0.1}  # the largest |delta| of each task's grid
    num = 0
    for task, scale in size.items():
        for seed in range(3):
            base = record(task, {"name": "none", "label": "baseline"}, seed, 0.5 + 0.01 * seed)
            write_job(sweep, num, [f"task={task}", "reinit=none", f"seed={seed}"], base)
            num += 1
            for head in (1, 2):
                scheme = {"name": "heads", "layer": 1, "head": head, "label": f"L1H{head}"}
                value = 0.5 + 0.01 * seed - scale * head / 2
                write_job(sweep, num, [f"task={task}", f"h={head}", f"seed={seed}"],
                          record(task, scheme, seed, value))  # fmt: skip
                num += 1
    report = build_report([sweep], tmp_path / "out", n_resamples=200)

    def numbers(svg: Path) -> list[float]:
        """Numbers drawn as text (the house style keeps text as SVG <text>): the cell
        values and the colour bar's tick labels."""
        found = []
        for el in ET.parse(svg).iter():
            if not el.tag.endswith("text"):
                continue
            text = "".join(el.itertext()).strip()
            with contextlib.suppress(ValueError):
                found.append(float(text.replace("−", "-")))
        return found

    figures = tmp_path / "out" / "figures"
    cola = numbers(figures / "heads_cola_tiny_all_heads.svg")
    rte = numbers(figures / "heads_rte_tiny_all_heads.svg")
    assert -0.01 in cola and -0.1 in rte  # the cells' values (mean delta)
    # cola's colour bar reaches far past its own deltas: to rte's, the shared scale
    assert max(abs(v) for v in cola) >= 0.075 and max(abs(v) for v in rte) >= 0.075
    grids = [f for f in report.figures if f.get("kind") == "head_grid"]
    assert len(grids) == 2 and all("shared by every head grid" in f["caption"] for f in grids)


def png_dpi(path: Path) -> tuple[float, float]:
    from PIL import Image

    with Image.open(path) as im:
        return im.info["dpi"]


def test_figures_are_print_ready_vector_pdf_and_300_dpi_png(tmp_path):
    """House style: every figure as a PDF (text as text, TrueType), an SVG with <text>, a PNG
    at 300 dpi; the layer curve at the full text width with error bars only at the k values
    that were run (no band), the baseline drawn once, a legend naming the bars and n, and a
    paired-difference panel with a zero line and marks."""
    from reinitlab.report import figures as fg

    sweep = progressive_study(tmp_path, seeds=(0, 1, 2))
    report = build_report([sweep], tmp_path / "out", n_resamples=200)
    assert fg.STYLE.is_file() and fg.STYLE.parent.name == "report"
    for fig in report.figures:
        pdf = Path(fig["pdf"])
        assert pdf.read_bytes().startswith(b"%PDF") and b"/FontFile2" in pdf.read_bytes()
        assert png_dpi(fig["png"]) == pytest.approx((300, 300), abs=0.5)
        assert "<text" in Path(fig["svg"]).read_text()
    (fig,) = [f for f in report.figures if f.get("kind") == "layer_curve"]
    ids = svg_ids(Path(fig["svg"]))
    assert {"ci-bars", "ci-baseline", "paired-ci", "significance"} <= ids
    assert "ci-band" not in ids
    texts = [
        "".join(el.itertext()) for el in ET.parse(fig["svg"]).iter() if el.tag.endswith("text")
    ]
    assert "re-initialized: mean ± 95% t CI, n=3" in texts
    assert "baseline (k=L+1, dashed): mean ± 95% t CI, n=3" in texts
    assert "Δ dev mcc" in texts and "(variant − baseline)" in texts  # two lines fit the axes
    assert "(b) variant − baseline: mean ± 95% t CI, n=3 pairs" in texts
    from PIL import Image

    with Image.open(fig["png"]) as im:  # the full text width (7 in) at 300 dpi
        assert 1900 <= im.size[0] <= 2300
    assert "(b) Paired difference variant − baseline" in fig["caption"]


def test_paper_table_rows_variants_columns_tasks_with_marks(tmp_path):
    """One compact table per study: `mean ± half-interval (n)` per variant and task, * where
    the paired test is significant, † where decisions.json says the comparison was decided;
    a comparison the sequential rule governs (decided or not) gets no *: its seeds were added
    after looking, so the fixed-sample test would claim what the rule has not decided."""
    import json

    sweep = progressive_study(tmp_path, seeds=(0, 1, 2), tasks=("rte", "cola"))
    decided = {"task": "rte", "variant": "k=3", "decision": "worse", "at_budget": False,
               "mean_diff": -0.2, "low": -0.3, "high": -0.1, "seeds_used": 3, "stage": 1,
               "seeds_needed": 3, "cell": "task=rte"}  # fmt: skip
    open_at_budget = {
        **decided,
        "variant": "k=2",
        "decision": "undecided",
        "at_budget": True,
        "stage": None,
    }  # fmt: skip  -- never marked: the rule decided nothing
    (sweep / DECISIONS_FILENAME).write_text(json.dumps([decided, open_at_budget]))
    report = build_report([sweep], tmp_path / "out", n_resamples=200)
    (csv,) = (tmp_path / "out").glob("paper_*.csv")
    table = pd.read_csv(csv).set_index("label")
    assert list(table.index) == ["baseline", "k=1", "k=2", "k=3"]
    assert list(table.columns) == ["cola", "rte"]
    values = [round(0.8 - 0.1 * (L + 1 - 3) + noise(s, 3), 6) for s in (0, 1, 2)]
    lo, hi = sps.t.interval(0.95, 2, statistics.mean(values), sps.sem(values))
    want = f"{statistics.mean(values):.3f} ± {(hi - lo) / 2:.3f} (3)"
    assert table.loc["k=3", "rte"] == want + "†" and table.loc["k=3", "cola"] == want + "*"
    assert not table.loc["baseline", "rte"].endswith("*")
    # rte k=2 is as far from its baseline as cola k=2, but the rule left it undecided
    assert table.loc["k=2", "cola"].endswith("*") and table.loc["k=2", "rte"].endswith("(3)")
    cells = report.delta_cells.set_index(["task", "variant"])
    for ruled in [("rte", "k=2"), ("rte", "k=3")]:
        assert cells.loc[ruled, "test"] == "sequential rule"
        assert math.isnan(cells.loc[ruled, "p"]) and math.isnan(cells.loc[ruled, "p_holm"])
        # the rule's interval (decisions.json), not a fixed-sample one around the same pairs
        assert cells.loc[ruled, "ci_method"] == "sequential rule"
        assert (cells.loc[ruled, "ci_low"], cells.loc[ruled, "ci_high"]) == (-0.3, -0.1)
    assert cells.loc[("rte", "k=1"), "ci_method"] == "t"
    # the rest keep their test; Holm corrects over the two rte cells that have one
    assert cells.loc[("rte", "k=1"), "test"] == "paired t" and cells.loc[("rte", "k=1"), "p"] < 1
    assert set(cells.loc["rte", "family_size"]) == {1}
    assert "no *" in (tmp_path / "out" / "report.html").read_text()
    tex = csv.with_suffix(".tex").read_text()
    assert (
        "$\\pm$" in tex
        and "$^\\dagger$" in tex
        and "\\caption{Dev metric per variant and task" in tex
    )
    assert "Variant & cola & rte" in tex
    # the decided comparison is marked in its layer curve's paired panel, and only there
    curves = {f["title"].split(":")[1].split("·")[0].strip(): f for f in report.figures
              if f.get("kind") == "layer_curve"}  # fmt: skip
    assert "decision" in svg_ids(Path(curves["rte"]["svg"]))
    assert "decision" not in svg_ids(Path(curves["cola"]["svg"]))
    assert "† = decided by the sequential seed rule" in curves["rte"]["caption"]
    assert "No * where the adaptive seed rule governs" in curves["rte"]["caption"]
    assert "adjusted for every look and comparison" in curves["rte"]["caption"]
    # panel (b) draws the rule's interval (delta_cells' ci above), and its legend says so
    assert "mean ± seed rule" in Path(curves["rte"]["svg"]).read_text()
    # and in the overview of both tasks
    (overview,) = [f for f in report.figures if f.get("kind") == "layer_curves_all"]
    assert "decision" in svg_ids(Path(overview["svg"]))
    assert "† = decided by the sequential seed rule" in overview["caption"]
    assert "No * where" not in curves["cola"]["caption"]
    assert "no * on the comparisons it governs" in tex.replace("$^*$", "*")


def test_decision_table_prints_each_comparison_with_its_interval_and_error_rate(tmp_path):
    """The decision table a paper prints: every comparison with its variant (the generic paper
    columns would drop it), its outcome, the look and seeds it rests on, the paired mean
    difference and the rule's interval as `[low, high]`, the equivalence bounds and margin, and
    a caption naming the error rate read from the sweep's policy (multirun.yaml); the same
    table on the page. The CSV keeps the raw numbers and the policy's alpha and margin."""
    import json

    from reinitlab.decide.study import read_policy

    sweep = progressive_study(tmp_path, seeds=(0, 1, 2), tasks=("rte",))
    worse = {
        "task": "rte",
        "variant": "k=3",
        "decision": "worse",
        "at_budget": False,
        "mean_diff": -0.2,
        "low": -0.3,
        "high": -0.1,
        "seeds_used": 3,
        "stage": 1,
        "seeds_needed": 3,
        "cell": "task=rte",
        "equiv_low": -0.28,
        "equiv_high": -0.12,
    }
    at_budget = {**worse, "variant": "k=2", "decision": "undecided", "at_budget": True,
                 "mean_diff": -0.296, "low": -0.65, "high": 0.058, "stage": None}  # fmt: skip
    (sweep / DECISIONS_FILENAME).write_text(json.dumps([worse, at_budget]))
    assert read_policy(sweep) is None  # no multirun.yaml: the decisions stand without it
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    seeds: adaptive\n    adaptive:\n      min_seeds: 3\n"
        "      max_seeds: 10\n      alpha: 0.1\n      margin: {rte: 0.02}\n"
    )
    assert read_policy(sweep).alpha == 0.1
    build_report([sweep], tmp_path / "out", n_resamples=200)
    out = tmp_path / "out"
    raw = pd.read_csv(out / "decisions.csv")
    assert raw[["variant", "alpha", "margin", "family"]].values.tolist() == [
        ["k=3", 0.1, 0.02, "task"],
        ["k=2", 0.1, 0.02, "task"],
    ]
    assert raw["low"].tolist() == [-0.3, -0.65]
    tex = (out / "decisions.tex").read_text()
    header, rows = latex_rows(tex)
    assert header == ["Task", "Variant", "Decision", "Look", "Seeds", "Mean $\\Delta$",
                      "Interval", "Equivalence bounds", "Margin"]  # fmt: skip
    assert rows == [
        ["rte", "k=3", "worse", "1", "3", "-0.200", "[-0.300, -0.100]", "[-0.280, -0.120]", "0.02"],
        ["rte", "k=2", "undecided at budget", "--", "3", "-0.296", "[-0.650, +0.058]",
         "[-0.280, -0.120]", "0.02"],
    ]  # fmt: skip
    assert "at most 0.1 chance of any wrong decision per task" in tex
    page = (out / "report.html").read_text()
    section = page.split("<h2>Decisions of the sequential seed rule</h2>", 1)[1].split("<h2>")[0]
    assert "at most 0.1 chance of any wrong decision per task" in section
    assert "undecided at budget" in section and "[-0.650, +0.058]" in section
    # a damaged policy file leaves the rate unsaid rather than failing the report
    (sweep / "multirun.yaml").write_text("hydra: [")
    assert read_policy(sweep) is None
    build_report([sweep], tmp_path / "out2", n_resamples=200)
    assert (
        "the family-wise alpha of each sweep's policy"
        in (tmp_path / "out2" / "decisions.tex").read_text()
    )


def test_latex_tables_keep_their_results_even_when_every_row_agrees(tmp_path):
    """A column that describes the rows (model, train size) is said once in the caption when
    every row has the same value; results (means, intervals, the paper table's cells) stay in
    the table even when every variant scored the same."""
    sweep = tmp_path / "flat"
    for num, (k, seed) in enumerate((k, s) for k in (1, 4) for s in (0, 1, 2)):
        rec = record("rte", progressive_scheme(k), seed, 0.5 + 0.01 * seed)
        write_job(sweep, num, ["task=rte", f"reinit.k={k}", f"seed={seed}"], rec)
    build_report([sweep], tmp_path / "out", n_resamples=100)
    out = tmp_path / "out"
    header, rows = latex_rows((out / "aggregates.tex").read_text())
    assert header[:2] == ["Variant", "n"] and "Mean" in header and len(rows) == 2
    assert (
        "Every row: Task rte; Model tiny; Train examples all"
        in (out / "aggregates.tex").read_text()
    )
    (paper,) = out.glob("paper_*.tex")
    assert "decided" not in paper.read_text()  # no decisions.json: no † explained
    header, rows = latex_rows(paper.read_text())
    assert header == ["Variant", "rte"] and rows[0][1].startswith("0.510 $\\pm$")


def test_a_rule_comparison_is_shown_as_the_rule_saw_it_at_its_last_look():
    """Mid-stage, a variant may have one more finished pair than the rule's last look used; the
    report shows the look's pairs (seeds 0..n-1) with the rule's interval, so the point and its
    bar agree, and a fixed-sample cell beside it keeps all its pairs and its t interval."""
    from reinitlab.report.stats import RuleLook, delta_cells

    rows = []
    for variant in ("k=1", "k=2"):
        for s, d in enumerate((-0.1, -0.2, -0.3, -0.8)):
            rows.append({"task": "rte", "model": "tiny", "size": "all", "factors": "",
                         "chain": "none", "scheme": "progressive", "figure": "progressive",
                         "variant": variant, "label": variant, "seed": s, "primary": 0.5 + d,
                         "baseline": 0.5, "baseline_missing": False, "sweep_dir": "study",
                         "sweep_cell": "task=rte", "final_primary": 0.5 + d,
                         "baseline_final": 0.5})  # fmt: skip
    first_stage = [r for r in rows if r["seed"] < 2]
    early = delta_cells(
        pd.DataFrame(first_stage),
        sequential={("study", "task=rte", "k=1"): RuleLook(0, math.nan, math.nan)},
    ).set_index("variant")
    # before the rule's first look: the pairs so far, no interval and no test
    assert early.loc["k=1", "n_pairs"] == 2 and early.loc["k=1", "mean_delta"] == pytest.approx(
        -0.15
    )
    assert math.isnan(early.loc["k=1", "ci_low"]) and early.loc["k=1", "ci_method"].startswith(
        "none"
    )
    cells = delta_cells(
        pd.DataFrame(rows), sequential={("study", "task=rte", "k=1"): RuleLook(3, -0.9, 0.5)}
    ).set_index("variant")
    ruled, fixed = cells.loc["k=1"], cells.loc["k=2"]
    assert ruled["n_pairs"] == 3 and ruled["mean_delta"] == pytest.approx(-0.2)
    assert (ruled["ci_low"], ruled["ci_high"], ruled["ci_method"]) == (-0.9, 0.5, "sequential rule")
    assert math.isnan(ruled["p"])
    assert fixed["n_pairs"] == 4 and fixed["mean_delta"] == pytest.approx(-0.35)
    d = [-0.1, -0.2, -0.3, -0.8]
    lo, hi = sps.t.interval(0.95, 3, statistics.mean(d), sps.sem(d))
    assert (fixed["ci_low"], fixed["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert fixed["test"] == "paired t" and fixed["p"] < 1


def test_a_rule_governs_only_the_cell_of_its_own_sweep(tmp_path):
    """A report over an adaptive sweep and fixed ones: the rule's decision (decisions.json)
    governs the runs of the cell it names in its own sweep. Another model's cell of the same
    task and variant keeps its paired t test and gets no †; the same cell's runs from another
    sweep are left out of the rule's comparison (its interval covers its own seeds only) and
    the report says so; one cell decided by two rules is refused."""
    import json

    from reinitlab.errors import ReinitlabError

    ruled = progressive_study(tmp_path / "adaptive", seeds=(0, 1, 2))
    decision = {"task": "rte", "variant": "k=3", "decision": "worse", "at_budget": False,
                "mean_diff": -0.2, "low": -0.3, "high": -0.1, "seeds_used": 3, "stage": 1,
                "seeds_needed": 3, "cell": "task=rte"}  # fmt: skip
    (ruled / DECISIONS_FILENAME).write_text(json.dumps([decision]))
    for path in ruled.glob("*/result.json"):  # a best epoch above the last one, for k=3
        rec = json.loads(path.read_text())
        if rec["scheme"]["k"] == 3:
            rec["best"]["metrics"]["val/primary"] += 0.05
            path.write_text(json.dumps(rec))
    more_seeds = progressive_study(tmp_path / "fixed", seeds=(3, 4))
    other_model = tmp_path / "other_model"
    for num, (k, seed) in enumerate((k, s) for k in (3, 4) for s in (0, 1, 2)):
        rec = record("rte", progressive_scheme(k), seed, 0.5 + (0.1 + 0.01 * seed) * (k == 4),
                     model="other")  # fmt: skip
        write_job(other_model, num, ["task=rte", "model=other", f"reinit.k={k}", f"seed={seed}"],
                  rec)  # fmt: skip
    report = build_report(
        [ruled, more_seeds, other_model], tmp_path / "out", metric="best", n_resamples=200
    )
    cells = report.delta_cells.set_index(["model", "variant"])
    mine, other = cells.loc[("tiny", "k=3")], cells.loc[("other", "k=3")]
    assert (mine["test"], mine["decision"], mine["n_pairs"], mine["n_left_out"]) == (
        "sequential rule",
        "worse",
        3,
        2,
    )
    want = [round(0.8 - 0.1 * (L + 1 - 3) + noise(s, 3), 6) - round(0.8 + noise(s, 4), 6)
            for s in (0, 1, 2)]  # fmt: skip
    # in the values the rule compared (final epochs), though the report reads best epochs
    assert mine["mean_delta"] == pytest.approx(statistics.mean(want))
    rows = report.deltas[(report.deltas["sweep_dir"] == str(ruled))
                         & (report.deltas["variant"] == "k=3")]  # fmt: skip
    assert sorted(rows["delta"]) == pytest.approx(sorted(w + 0.05 for w in want))
    assert (mine["ci_low"], mine["ci_high"]) == (-0.3, -0.1)
    # the other model's k=3: its own three pairs (-0.10, -0.11, -0.12), a paired t test and
    # no decision
    assert (other["test"], other["decision"], other["n_pairs"], other["n_left_out"]) == (
        "paired t",
        "",
        3,
        0,
    )
    assert other["mean_delta"] == pytest.approx(-0.11) and other["p"] < 0.05
    # k=1, which no decision names, keeps the pairs of both sweeps (seeds 0-4) and its test
    assert cells.loc[("tiny", "k=1"), "test"] == "paired t"
    assert cells.loc[("tiny", "k=1"), "n_pairs"] == 5
    paper = {
        p.stem: pd.read_csv(p).set_index("label") for p in (tmp_path / "out").glob("paper_*.csv")
    }
    (tiny,) = [t for name, t in paper.items() if "tiny" in name]
    (others,) = [t for name, t in paper.items() if "other" in name]
    assert tiny.loc["k=3", "rte"].endswith("†") and not others.loc["k=3", "rte"].endswith("†")
    assert others.loc["k=3", "rte"].endswith("*")
    assert any(
        "pairs of other sweeps left out of them: rte k=3 (tiny): 2" in n for n in report.notes
    )
    # a second adaptive sweep deciding the same cell: refused, naming both
    (more_seeds / DECISIONS_FILENAME).write_text(json.dumps([decision]))
    with pytest.raises(ReinitlabError, match="decided by the adaptive seed rule more than once"):
        build_report([ruled, more_seeds], tmp_path / "out2", n_resamples=200)
