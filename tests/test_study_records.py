"""The studies committed under docs/study/ are reproducible from their records.

Each study keeps its sweep directory (the ledger's records) and its report in the repository
(docs/study/README.md). Its tables are a pure function of the records: rebuilding the report
with the command the README names (`reinitlab report docs/study/<study>`, defaults: bootstrap
seed 0, 10,000 resamples) must give exactly the committed tables. A commit that adds records
without rebuilding the report, or a change to the report's code that changes a published
number, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reinitlab.report.build import build_report
from tests.helpers import REPO

STUDIES = sorted(p.parent.parent for p in (REPO / "docs" / "study").glob("*/report/decisions.csv"))
# The tables a paper takes from the report: every csv and LaTeX table. Not the problems list
# nor the document around the tables (report.tex), which say how many jobs are running: that
# depends on leases, which are never committed, not on the records.
VOLATILE = {"problems.csv", "report.tex"}


def tables(out: Path) -> dict[str, str]:
    return {
        p.name: p.read_text()
        for p in sorted(out.iterdir())
        if p.suffix in {".csv", ".tex"} and p.name not in VOLATILE
    }


def test_there_are_committed_studies():
    assert {s.name for s in STUDIES} >= {"minilm-cola-stsb", "stsb-demo-adaptive"}


@pytest.mark.parametrize("study", STUDIES, ids=[s.name for s in STUDIES])
def test_the_committed_report_rebuilds_from_the_committed_records(study, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the records' run dirs are named relative to the repository root
    relative = study.relative_to(REPO)
    report = build_report([relative], tmp_path / "report")
    assert len(report.collection.records) > 0
    committed, rebuilt = tables(study / "report"), tables(tmp_path / "report")
    assert sorted(rebuilt) == sorted(committed)
    for name, text in committed.items():
        assert rebuilt[name] == text, f"{relative}/report/{name} differs from its rebuild"
    # every completed job committed is in the report, once
    results = sorted(study.glob("*/result.json"))
    assert len(report.collection.records) == len(results)
