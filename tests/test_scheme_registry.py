"""The scheme registry: a scheme is one class + one `conf/reinit/*.yaml`. A toy scheme defined
outside reinitlab runs through a sweep (its baseline added), `status` and the report without
any other module knowing about it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import SCHEMES, resolve_scheme, scheme_label
from reinitlab.report.build import build_report
from reinitlab.sweep.ledger import Ledger
from tests.helpers import REPO, needs_glue
from tests.test_sweeps import QUICK

HELPERS = REPO / "tests" / "helpers"


def test_builtin_schemes_are_registered_with_their_figures():
    assert list(SCHEMES) == [
        "none",
        "progressive",
        "layers",
        "block",
        "heads",
        "permute",
        "embeddings",
    ]
    assert SCHEMES["progressive"].figure == "layer_curve"
    assert SCHEMES["heads"].figure == "head_heatmap"
    assert SCHEMES["block"].figure == "bars"
    assert SCHEMES["progressive"].is_baseline({"k": 4}, num_layers=3)
    assert SCHEMES["progressive"].is_baseline({"k": None})
    assert not SCHEMES["progressive"].is_baseline({"k": 2}, num_layers=3)
    assert not SCHEMES["embeddings"].is_baseline({})
    with pytest.raises(ReinitlabError, match="not a known scheme"):
        resolve_scheme({"name": "nope"}, 3)


@needs_glue
def test_a_toy_scheme_runs_through_a_sweep_status_and_the_report(tmp_path):
    sys.path.insert(0, str(HELPERS))
    try:
        import toy_scheme  # noqa: F401  (registers `top` in this process too, for the report)
    finally:
        sys.path.remove(str(HELPERS))
    sel = resolve_scheme({"name": "top", "n": 2}, num_layers=3)
    assert sel.layers == (1, 2) and scheme_label("top", {"n": 2}, 3) == "top 2"

    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [
            sys.executable,
            str(HELPERS / "toy_scheme.py"),
            "-m",
            *QUICK,
            f"hydra.searchpath=[file://{HELPERS / 'toy_conf'}]",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={sweep}",
            "task=wnli",
            "reinit=top",
            "reinit.n=1,2",
        ],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "3 jobs (1 baselines added)" in out.stdout
    ledger = Ledger(sweep)
    assert ledger.counts()["completed"] == 3
    labels = sorted(j.record["scheme"]["label"] for j in ledger.jobs)
    assert labels == ["baseline", "top 1", "top 2"]
    top2 = next(j.record for j in ledger.jobs if j.record["scheme"]["label"] == "top 2")
    assert {t.split(".")[3] for t in top2["reset_tensors"] if ".layer." in t} == {"1", "2"}

    report = build_report([sweep], tmp_path / "report", n_resamples=200)
    assert sorted(report.runs["label"]) == labels
    top = report.deltas[report.deltas["scheme"] == "top"]
    assert len(top) == 2  # each paired with the added baseline
    assert [f["png"] for f in report.figures if "top" in str(f["png"])]  # drawn (as bars)
