"""`reinitlab dashboard`: the W&B workspace of a study, built from what its runs logged.

The end-to-end tests run a real tiny sweep with W&B offline and read its `.wandb` files back;
the push goes to a stubbed W&B API client (no W&B server is reachable from CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reinitlab.cli import main as cli_main
from reinitlab.report.dashboard import (
    StudyRuns,
    build_workspace,
    flat_config,
    plan_dashboard,
)
from reinitlab.report.wandb_files import find_run_files, flat_keys, read_run
from tests.helpers import GLUE, needs_glue


def panel_metrics(workspace) -> set[str]:
    """Every metric or config key a panel of the workspace names."""
    import wandb_workspaces.reports.v2 as wr

    def name(m):
        return m if isinstance(m, str) else m.name

    out: set[str] = set()
    for section in workspace.sections:
        for panel in section.panels:
            if isinstance(panel, wr.LinePlot):
                out |= {name(m) for m in panel.y}
            elif isinstance(panel, wr.BarPlot):
                out |= {name(m) for m in panel.metrics}
            elif isinstance(panel, wr.ScatterPlot):
                out |= {name(panel.x), name(panel.y)}
            elif isinstance(panel, wr.ParallelCoordinatesPlot):
                out |= {name(c.metric) for c in panel.columns}
    return out


def fake_run(run_id, config, history_keys, summary):
    return {
        "run_id": run_id,
        "group": "g",
        "config": config,
        "config_flat": flat_config(config),
        "history": [dict.fromkeys(history_keys, 0.5)],
        "summary": summary,
    }


def test_plan_uses_the_runs_own_keys_and_only_logged_metrics():
    # runs logged before the flat keys existed: the nested spelling is used instead
    old = [
        fake_run(
            f"r{i}",
            {
                "task": {"name": "rte"},
                "model": {"name": "tiny"},
                "reinit": {"name": "progressive"},
                "scheme_label": label,
                "seed": i % 2,
            },  # fmt: skip
            ["val/primary", "deltas/layer_01/all"],
            {"val/primary": 0.5, "deltas/layer_01/all": 0.1},
        )
        for i, label in enumerate(["k=1", "k=1", "baseline", "baseline"])
    ]
    study = StudyRuns(Path("s"), "s", old, {"val/primary", "deltas/layer_01/all"})
    study.summary_keys = {"val/primary", "deltas/layer_01/all"}
    plan = plan_dashboard(study)
    assert plan.groupby == ["task.name", "scheme_label"]  # model, scheme do not vary
    assert plan.filter_key is None and plan.baseline_runs == ["r2", "r3"]
    workspace, _ = build_workspace(study, "ent", "proj")
    named = panel_metrics(workspace)
    assert named <= study.history_keys | study.summary_keys | {"task.name", "seed"}
    assert "deltas/layer_01/all" in named
    assert not any(m.startswith("deltas/head/") for m in named)  # none logged, none named
    assert workspace.runset_settings.baseline_run.slug == "r2"


# --- end to end: a real tiny sweep with W&B offline ----------------------------------------


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory):
    from tests.test_train import run_cli

    root = tmp_path_factory.mktemp("dash")
    sweep = root / "multirun" / "2026-12-02_10-00-00_abcd"
    out = run_cli(
        "-m",
        "model=tiny",
        "task=wnli",
        "reinit.k=1,4",
        "seed=0,1",
        "logger=wandb",
        f"data.glue_dir={GLUE}",
        f"data.cache_dir={root / 'cache'}",
        "data.max_train_samples=32",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        cwd=root,
        env_extra={"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return sweep


@needs_glue
@pytest.mark.slow
def test_dashboard_spec_groups_by_the_sweeps_keys_and_names_only_logged_metrics(
    wandb_sweep, tmp_path, capsys
):
    spec_path = tmp_path / "ws.json"
    args = ["dashboard", str(wandb_sweep), "--entity", "ent", "--project", "proj"]
    assert cli_main([*args, "--out", str(spec_path)]) == 0
    printed = capsys.readouterr().out
    assert "wandb sync" in printed and "--push" in printed
    spec = json.loads(spec_path.read_text())
    # what the runs logged, read back here independently from their .wandb files
    runs = [read_run(f) for f in find_run_files(wandb_sweep)]
    assert len(runs) == 4
    history = {k for r in runs for row in r["history"] for k in row if not k.startswith("_")}
    summary = {k for r in runs for k in flat_keys(r["summary"])}
    configs = [flat_config(r["config"]) for r in runs]
    plan = spec["reinitlab"]
    assert plan["study"] == wandb_sweep.name and plan["groupby"] == ["task_name", "label"]
    for key in [*plan["groupby"], plan["filter_key"], *plan["parallel_columns"][:-1]]:
        assert all(key in c for c in configs), key
    assert {c["label"] for c in configs} == {"k=1", "baseline"}
    assert set(plan["history_metrics"]) <= history and set(plan["summary_metrics"]) <= summary
    assert plan["parallel_columns"] == ["task_name", "k", "seed", "val/primary.last"]
    baselines = sorted(r["run_id"] for r in runs if r["config"]["label"] == "baseline")
    assert plan["baseline_runs"] == baselines
    # the workspace's panels name nothing else, and its JSON spec says the same
    from reinitlab.report.dashboard import read_study

    workspace, _ = build_workspace(read_study(wandb_sweep), "ent", "proj")
    named = panel_metrics(workspace)
    assert named <= history | summary | set(configs[0])
    assert {f"deltas/head/L{a:02d}H{h:02d}" for a in (1, 2, 3) for h in (1, 2, 3, 4)} <= named
    text = json.dumps(spec["spec"])
    for metric in named - set(configs[0]):
        assert metric in text, metric
    heads = [s for s in workspace.sections if s.name == "Weight movement per head"]
    assert len(heads) == 1 and len(heads[0].panels) == 3  # one bar chart per layer
    assert workspace.runset_settings.baseline_run.slug == baselines[0]


class StubServiceApi:
    """Stands in for the GraphQL client of wandb's public API (`wandb.Api()._service_api` in
    wandb 0.31, which wandb-workspaces calls): records what would be sent to the server."""

    app_url = "https://wandb.stub.invalid/"

    def __init__(self):
        self.calls = []

    def execute_graphql(self, query, variables=None):
        self.calls.append((query, variables))
        return {"upsertView": {"view": {"id": "view-id", "name": "view-name"}, "inserted": True}}


@needs_glue
@pytest.mark.slow
def test_push_saves_the_same_spec_through_the_wandb_client(
    wandb_sweep, tmp_path, monkeypatch, capsys
):
    import wandb

    client = StubServiceApi()

    class StubApi:
        def __init__(self, *a, **k):
            self._service_api = client

    monkeypatch.setattr(wandb, "Api", StubApi)
    spec_path = tmp_path / "ws.json"
    args = ["dashboard", str(wandb_sweep), "--entity", "ent", "--project", "proj"]
    assert cli_main([*args, "--out", str(spec_path), "--push"]) == 0
    assert "saved: https://wandb.stub.invalid/ent/proj?nw=" in capsys.readouterr().out
    ((query, sent),) = client.calls
    assert "upsertView" in query
    assert sent["entityName"] == "ent" and sent["projectName"] == "proj"
    assert json.loads(sent["spec"]) == json.loads(spec_path.read_text())["spec"]

    class NoLogin:
        def __init__(self, *a, **k):
            raise wandb.errors.UsageError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "Api", NoLogin)
    assert cli_main([*args, "--out", str(spec_path), "--push"]) == 2
    assert "wandb login" in capsys.readouterr().err


@needs_glue
@pytest.mark.slow
def test_report_of_the_real_sweep_has_labels_and_no_marks_at_two_seeds(wandb_sweep, tmp_path):
    from reinitlab.report.build import build_report
    from tests.test_report_paper import FIGURE_MARKS, assert_no_raw_config, svg_ids

    out = tmp_path / "report"
    report = build_report([wandb_sweep], out, n_resamples=200)
    assert_no_raw_config(out, report)
    assert set(report.runs["label"]) == {"k=1", "baseline"}
    (curve,) = [f for f in report.figures if f.get("kind") == "layer_curve"]
    assert not svg_ids(Path(curve["svg"])) & set(FIGURE_MARKS)
    assert "model tiny" in curve["caption"] and "32 train examples" in curve["caption"]
    assert "lr 2e-05, epochs 1, batch 32" in curve["caption"]
    points = report.tables["layer_curve_wnli_tiny_32_progressive"]
    assert list(points["k"]) == [1, 4] and list(points["label"]) == ["k=1", "baseline"]
    assert points["ci_low"].isna().all()  # 2 seeds: no interval, also for the baseline point


def test_a_sweep_without_wandb_runs_is_a_clear_error(tmp_path, capsys):
    from tests.test_report import progressive_scheme, record, write_job

    sweep = tmp_path / "csv_sweep"
    for num, k in enumerate((1, 4)):
        write_job(sweep, num, [f"reinit.k={k}"], record("rte", progressive_scheme(k), 0, 0.5))
    args = ["dashboard", str(sweep), "--entity", "e", "--project", "p"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "no W&B run files" in err and "2 completed jobs" in err and "logger=wandb" in err
    assert not (sweep / "wandb_workspace.json").exists()  # nothing half-written
    assert cli_main(["dashboard", str(tmp_path / "nowhere"), *args[2:]]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_dashboard_of_an_unfinished_sweep_says_how_many_jobs_it_shows(
    tmp_path, monkeypatch, capsys
):
    """2 of 4 jobs done (one running, one failed): the workspace is built, and the command
    says it holds 2 of the 4 jobs and why the others are not there."""
    import time

    from reinitlab.atomic import write_json_atomic
    from reinitlab.report import dashboard
    from reinitlab.sweep.ledger import FAILED_FILENAME, RUNNING_FILENAME
    from tests.test_report import progressive_scheme, record, write_job

    sweep = tmp_path / "sweep"
    for num, k in enumerate((1, 4)):
        write_job(sweep, num, [f"reinit.k={k}"], record("rte", progressive_scheme(k), 0, 0.5))
    failed = write_job(sweep, 2, ["reinit.k=2"], None)
    write_json_atomic(failed / FAILED_FILENAME, {"error": "boom", "kind": "error"})
    running = write_job(sweep, 3, ["reinit.k=3"], None)
    now = time.time()
    write_json_atomic(
        running / RUNNING_FILENAME,
        {"pid": 1, "host": "elsewhere", "heartbeat": now, "started": now},
    )
    # the completed jobs' W&B files, as read_run would return them
    monkeypatch.setattr(dashboard, "find_run_files", lambda d: [Path(d) / "run.wandb"])
    runs = iter([fake_run(f"r{i}", {"study": "s", "task": {"name": "rte"}}, ["val/primary"], {})
                 for i in range(2)])  # fmt: skip
    monkeypatch.setattr(dashboard, "read_run", lambda path: next(runs))
    args = ["dashboard", str(sweep), "--entity", "e", "--project", "p"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "the sweep is not finished: the workspace is built from 2 of 4 jobs" in out
    assert "(1 failed, 1 running)" in out
