"""`hydra.sweeper.seeds=adaptive` end to end on the tiny model: stages of real jobs, decisions
recomputed from the ledger's records, resume without training a job twice, dry run, refusals.
The rule itself is tested in tests/test_decide.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reinitlab.decide.rule import Policy
from reinitlab.decide.study import Comparison, Decision, Result, decide
from reinitlab.sweep.ledger import RESULT_FILENAME, Ledger
from tests.helpers import needs_glue
from tests.test_sweeps import multirun

ADAPTIVE = (
    "task=stsb",
    "reinit.k=1,3",
    "hydra.sweeper.seeds=adaptive",
    "hydra.sweeper.adaptive.min_seeds=2",
    "hydra.sweeper.adaptive.max_seeds=3",
)
POLICY = Policy(min_seeds=2, max_seeds=3)


def results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.rglob(RESULT_FILENAME))]


def expected_decisions(sweep: Path) -> list[dict]:
    """The decisions recomputed by hand from the records on disk: pairs by seed, one cell."""
    recs = results(sweep)
    out = [
        Result(
            "cell",
            None if r["scheme"]["label"] == "baseline" else r["scheme"]["label"],
            r["seed"],
            r["final"]["metrics"]["val/primary"],
        )
        for r in recs
    ]
    comps = [Comparison("stsb", "cell", "k=1"), Comparison("stsb", "cell", "k=3")]
    return [d.as_dict() for d in decide(comps, out, POLICY)]


@pytest.fixture(scope="module")
def adaptive_study(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("adaptive") / "sweep"
    out = multirun(sweep, *ADAPTIVE)
    assert out.returncode == 0, out.stderr[-3000:]
    return sweep, out


@needs_glue
def test_stages_add_seeds_only_where_undecided(adaptive_study):
    sweep, out = adaptive_study
    recs = results(sweep)
    decisions = json.loads((sweep / "decisions.json").read_text())
    want = expected_decisions(sweep)
    for got, exp in zip(decisions, want, strict=True):
        assert {k: v for k, v in got.items() if k != "cell"} == pytest.approx(
            {k: v for k, v in exp.items() if k != "cell"}
        )
    assert [d["variant"] for d in decisions] == ["k=1", "k=3"]
    cell = decisions[0]["cell"].split()
    assert "task=stsb" in cell and "model=tiny" in cell and decisions[1]["cell"] == " ".join(cell)
    assert not any(o.startswith(("data.cache_dir", "hydra.", "logger", "seed")) for o in cell)
    # stage 1: 2 seeds of k=1, k=3 and the baseline; stage 2: seed 2 of each undecided
    # variant and of the baseline when any is undecided
    undecided_at_1 = [d for d in decisions if d["decision"] == "undecided" or d["stage"] == 2]
    per_label = {lab: sorted(r["seed"] for r in recs if r["scheme"]["label"] == lab)
                 for lab in ("k=1", "k=3", "baseline")}  # fmt: skip
    for d in decisions:
        assert per_label[d["variant"]] == list(range(d["seeds_used"]))
    assert per_label["baseline"] == list(range(3 if undecided_at_1 else 2))
    assert len(recs) == 6 + len(undecided_at_1) + (1 if undecided_at_1 else 0)
    assert len({r["job_key"] for r in recs}) == len(recs)  # no job trained twice
    assert "[reinitlab] decisions (" in out.stdout
    assert "stage 1 of at most 2 (looks at 2, 3 seeds)" in out.stdout
    # said once, before the first stage: what each look can decide, in sds of the differences
    first, second = (f"{w:.3g}" for w in POLICY.half_widths(2))
    widths = (f"[reinitlab] stsb: 2 comparisons, alpha 0.05 over all looks; a look decides "
              f"better/worse only where the paired mean difference exceeds {first} sds of the "
              f"paired differences at 2 seeds, {second} at 3")  # fmt: skip
    assert out.stdout.count(widths) == 1, out.stdout
    assert out.stdout.index(widths) < out.stdout.index("stage 1 of at most 2")
    # the stage plan names its baselines: none is "added", and the line does not say "0 added"
    assert f"{sweep}: 6 jobs; 0 already completed, 0 running elsewhere, 6 to run" in out.stdout


@needs_glue
def test_rerun_and_kill_mid_stage_continue_without_training_twice(adaptive_study, tmp_path):
    sweep, _ = adaptive_study
    work = tmp_path / "sweep"
    shutil.copytree(sweep, work)
    before = {p: p.read_bytes() for p in work.rglob(RESULT_FILENAME)}
    again = multirun(work, *ADAPTIVE)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_bytes() for p in work.rglob(RESULT_FILENAME)} == before
    assert "0 to run" in again.stdout
    # a job of the last stage lost as if killed before it finished: only it runs again
    last = max(before, key=lambda p: int(p.parent.name.split("_")[0]))
    lost_key = json.loads(last.read_text())["job_key"]
    shutil.rmtree(last.parent)
    (work / "decisions.json").unlink()
    resumed = multirun(work, *ADAPTIVE)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {p: p.read_bytes() for p in work.rglob(RESULT_FILENAME)}
    assert len(after) == len(before)
    assert sum(1 for p in after if p not in before or after[p] != before[p]) == 1
    assert Ledger(work).job(lost_key).state == "completed"
    assert json.loads((work / "decisions.json").read_text())[0]["variant"] == "k=1"
    # a dry run shows the decisions and that nothing is left to run, and writes nothing
    dry = multirun(work, *ADAPTIVE, "hydra.sweeper.dry_run=true")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "decisions so far:" in dry.stdout and "dry run: 0 of" in dry.stdout


@needs_glue
def test_adaptive_refuses_a_seed_sweep_and_bad_options(tmp_path):
    swept = multirun(tmp_path / "a", *ADAPTIVE, "seed=0,1")
    assert swept.returncode == 2
    assert "seed=0,1: hydra.sweeper.seeds=adaptive chooses the seeds" in swept.stderr
    bad = multirun(tmp_path / "b", *ADAPTIVE, "hydra.sweeper.adaptive.family=cell")
    assert bad.returncode == 2
    assert "hydra.sweeper.adaptive.family='cell' is not allowed" in bad.stderr
    unknown = multirun(tmp_path / "d", *ADAPTIVE, "+hydra.sweeper.adaptive.min_seed=3")
    assert unknown.returncode == 2
    assert "hydra.sweeper.adaptive.min_seed is not an option" in unknown.stderr
    policy = multirun(tmp_path / "c", *ADAPTIVE, "hydra.sweeper.seeds=sometimes")
    assert policy.returncode == 2
    assert "hydra.sweeper.seeds='sometimes' is not a seeds policy" in policy.stderr
    assert not (tmp_path / "a" / "decisions.json").exists()


@needs_glue
def test_decisions_shown_by_status_and_the_report(adaptive_study, tmp_path):
    import pandas as pd

    from reinitlab.report.build import build_report
    from reinitlab.sweep.status import as_json, format_status

    sweep, _ = adaptive_study
    decisions = json.loads((sweep / "decisions.json").read_text())
    text = format_status(sweep, Ledger(sweep))
    assert "decisions (adaptive seeds):" in text
    for d in decisions:
        assert any(line.startswith(f"stsb  {d['variant']}") for line in text.splitlines())
    assert as_json(Ledger(sweep))["decisions"] == decisions
    build_report([sweep], tmp_path / "report", n_resamples=200)
    table = pd.read_csv(tmp_path / "report" / "decisions.csv")
    assert table["variant"].tolist() == ["k=1", "k=3"]
    assert table["decision"].tolist() == [d["decision"] for d in decisions]
    assert table["seeds_used"].tolist() == [d["seeds_used"] for d in decisions]
    # the W&B summary run: the decisions table and how many variants ended each way
    from reinitlab.report.wandb_summary import log_summary
    from tests.helpers.wandb_reader import find_run_files, read_run

    report = build_report([sweep], tmp_path / "wb", n_resamples=200)
    log_summary(report)
    import wandb

    wandb.teardown()  # as `reinitlab report --wandb` does: the run file is complete after it
    run = read_run(find_run_files(tmp_path / "wb")[0])
    counted = {
        k.split("/", 1)[1]: v for k, v in run["summary"].items() if k.startswith("decisions/")
    }
    want: dict[str, int] = {}
    for d in decisions:
        what = d["decision"] + (" at budget" if d["at_budget"] else "")
        want[what] = want.get(what, 0) + 1
    assert counted == want
    assert run["history"][0]["report/decisions"]["_type"] == "table-file"
    # a fixed sweep has no decisions: status says nothing about them
    assert as_json(Ledger(tmp_path / "report"))["decisions"] is None


@needs_glue
def test_a_stage_runs_through_the_stacked_launcher(tmp_path):
    """A stage is an ordinary batch: the stacked launcher trains each seed's k=1, k=3 and
    baseline as one stack, and the stages and decisions are the same as solo."""
    sweep = tmp_path / "sweep"
    out = multirun(sweep, *ADAPTIVE, "hydra/launcher=stacked")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "stacked launcher: 6 jobs in 2 stacks, 0 solo" in out.stdout
    recs = results(sweep)
    assert len({r["job_key"] for r in recs}) == len(recs) >= 6
    got = json.loads((sweep / "decisions.json").read_text())
    for d, exp in zip(got, expected_decisions(sweep), strict=True):
        assert d["decision"] == exp["decision"] and d["seeds_used"] == exp["seeds_used"]


def test_stage_line_names_each_cells_stage_when_they_differ():
    """Stages are per cell: a study whose CoLA comparisons need a 7th seed while STS-B's need a
    5th is at stage 5 for CoLA and 3 for STS-B, not "stage 5" for both (as the console said of
    the MiniLM study); a cell with nothing left to run is said to be done."""
    from hydra_plugins.reinitlab_plugins.adaptive_seeds import stage_line

    policy = Policy(min_seeds=3, max_seeds=10)  # looks at 3, 4, ..., 10 seeds: 8 stages

    def decision(task, variant, decision, seeds_needed, at_budget=False, cell=None):
        return Decision(task, variant, decision, at_budget, None, None, None, seeds_needed,
                        None, seeds_needed, cell or f"task={task}")  # fmt: skip

    looks = "(looks at 3, 4, 5, 6, 7, 8, 9, 10 seeds)"
    cola = [decision("cola", "k=1", "worse", 5), decision("cola", "k=3", "undecided", 7)]
    stsb = [decision("stsb", "k=1", "worse", 3), decision("stsb", "k=5", "undecided", 5)]
    assert stage_line(cola + stsb, policy) == (
        f"stages of at most 8 {looks}: cola stage 5 (7 seeds), stsb stage 3 (5 seeds)"
    )
    # one stage for all open cells: said once, as before
    assert stage_line(cola, policy) == f"stage 5 of at most 8 {looks}"
    # a cell decided or at budget everywhere runs nothing more
    stsb_done = [stsb[0], decision("stsb", "k=5", "undecided", 10, at_budget=True)]
    assert stage_line(cola + stsb_done, policy) == (
        f"stages of at most 8 {looks}: cola stage 5 (7 seeds), stsb done"
    )
    assert stage_line(stsb_done, policy) == f"every comparison decided or at budget {looks}"
    # two cells of one task (another model): named by their overrides
    mpnet = [decision("cola", "k=3", "undecided", 4, cell="task=cola model=mpnet")]
    assert stage_line(cola + mpnet, policy).endswith(
        ": task=cola stage 5 (7 seeds), task=cola model=mpnet stage 2 (4 seeds)"
    )
