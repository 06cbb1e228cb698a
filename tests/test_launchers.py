"""The `gpus` launcher: parallel jobs, each on its own GPU slot, slots freed on any exit."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reinitlab.sweep.gpu_slots import acquire_slot, release, slot_names
from tests.helpers import REPO, compose_cfg, needs_glue

APP = REPO / "tests" / "helpers" / "slot_app.py"


def run_app(tmp_path: Path, *overrides: str, gpus: str = "0,1,2"):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "REINITLAB_FAKE_GPUS": gpus,
        "REINITLAB_GPU_LOCK_DIR": str(tmp_path / "locks"),
    }
    return subprocess.run(
        [
            sys.executable,
            str(APP),
            "-m",
            f"hydra.searchpath=[file://{REPO / 'conf'}]",
            "hydra/launcher=gpus",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *overrides,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def job_records(sweep: Path) -> list[dict]:
    out = []
    for app_file in sorted(sweep.glob("*/slot_app.json")):
        rec = json.loads(app_file.read_text())
        rec["launcher"] = json.loads((app_file.parent / "gpu_slot.json").read_text())
        out.append(rec)
    return out


def overlapping(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def assert_no_shared_slot(recs: list[dict]) -> None:
    for a, b in itertools.combinations(recs, 2):
        if overlapping(a["launcher"], b["launcher"]):
            assert a["slot"] != b["slot"], (a, b)


def max_concurrency(recs: list[dict]) -> int:
    return max(sum(r["start"] <= t < r["end"] for r in recs) for t in (r["start"] for r in recs))


def test_slot_pool_hands_out_each_slot_once(tmp_path):
    assert slot_names(["0", "1"], 2) == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    held = [acquire_slot(["0", "1"], 2, tmp_path) for _ in range(4)]
    assert sorted(s.name for s in held) == ["0:0", "0:1", "1:0", "1:1"]
    try:
        acquire_slot(["0", "1"], 2, tmp_path, timeout_s=0.3)
        raise AssertionError("a fifth slot was handed out")
    except TimeoutError:
        pass
    release(held[2])
    assert acquire_slot(["0", "1"], 2, tmp_path, timeout_s=1).name == held[2].name


def test_eight_jobs_on_three_fake_gpus_never_share_one(tmp_path):
    out = run_app(tmp_path, "i=range(8)", "sleep_s=1.0")
    assert out.returncode == 0, out.stderr[-3000:]
    recs = job_records(tmp_path / "sweep")
    assert sorted(r["i"] for r in recs) == list(range(8))
    assert {r["slot"] for r in recs} <= {"0:0", "1:0", "2:0"}
    for r in recs:  # the job saw only its own GPU
        assert r["cuda_visible_devices"] == r["slot"].split(":")[0] == r["launcher"]["gpu"]
        assert r["launcher"]["start"] <= r["start"] and r["end"] <= r["launcher"]["end"]
    assert_no_shared_slot(recs)
    assert 2 <= max_concurrency(recs) <= 3  # really parallel, never more than the GPUs


def test_packing_and_a_crashed_job_frees_its_slot(tmp_path):
    out = run_app(
        tmp_path,
        "i=range(7)",
        "sleep_s=1.0",
        "crash_on=1",
        "hydra.launcher.jobs_per_gpu=2",
        gpus="0,1",
    )
    assert out.returncode != 0  # the crashed job fails the sweep...
    assert "died without a result (exit code 3)" in out.stderr
    recs = job_records(tmp_path / "sweep")
    assert sorted(r["i"] for r in recs) == [0, 2, 3, 4, 5, 6]  # ...the others all finish
    assert {r["slot"] for r in recs} <= {"0:0", "1:0", "0:1", "1:1"}
    assert_no_shared_slot(recs)
    assert max_concurrency(recs) <= 4
    # 7 jobs over 4 slots: some slot was used again after its first job ended (incl. crash)
    assert len({r["slot"] for r in recs}) < len(recs)


def test_three_slots_on_one_fake_gpu_run_three_jobs_at_once_never_more(tmp_path):
    # long enough sleeps that three spawned jobs overlap even on a loaded 2-core machine
    out = run_app(tmp_path, "i=range(6)", "sleep_s=4.0", "hydra.launcher.jobs_per_gpu=3", gpus="0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "6 jobs, 3 at a time on GPUs ['0'] (3 per GPU)" in out.stderr + out.stdout
    recs = job_records(tmp_path / "sweep")
    assert sorted(r["i"] for r in recs) == list(range(6))
    assert {r["slot"] for r in recs} == {"0:0", "0:1", "0:2"}
    assert {r["cuda_visible_devices"] for r in recs} == {"0"}  # all on the one GPU
    assert_no_shared_slot(recs)
    # three at once (on the slot locks' own clock too), and never a fourth
    assert max_concurrency(recs) == 3
    assert max_concurrency([r["launcher"] for r in recs]) == 3


def test_launcher_group_local_default_gpus_and_slurm_compose(tmp_path):
    assert compose_cfg(tmp_path).hydra.launcher._target_.endswith("LocalLauncher")
    assert compose_cfg(tmp_path, "hydra/launcher=gpus").hydra.launcher.jobs_per_gpu == 1
    slurm = compose_cfg(tmp_path, "hydra/launcher=slurm").hydra.launcher
    from hydra.utils import get_class

    bases = [f"{c.__module__}.{c.__name__}" for c in get_class(slurm._target_).__mro__]
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in bases
    assert slurm.gpus_per_node == 1 and slurm.timeout_min >= 11 and slurm.max_num_timeout >= 1
    assert slurm.signal_delay_s > 0 and slurm.array_parallelism > 0 and slurm.partition is None
    assert (REPO / ".gitignore").read_text().count("conf/launcher/local_cluster.yaml") == 1


@pytest.mark.slow
@needs_glue
def test_gpus_launcher_runs_real_training_jobs(tmp_path):
    from tests.test_sweeps import multirun, records

    sweep = tmp_path / "sweep"
    env = {"REINITLAB_FAKE_GPUS": "0,1", "REINITLAB_GPU_LOCK_DIR": str(tmp_path / "locks")}
    out = multirun(sweep, "hydra/launcher=gpus", "task=wnli", "reinit.k=1,2", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    recs = records(sweep)
    assert sorted(r["scheme"]["label"] for r in recs.values()) == ["baseline", "k=1", "k=2"]
    slots = [json.loads((p.parent / "gpu_slot.json").read_text()) for p in recs]
    assert {s["gpu"] for s in slots} <= {"0", "1"}
    for a, b in itertools.combinations(slots, 2):
        if a["start"] < b["end"] and b["start"] < a["end"]:
            assert a["slot"] != b["slot"]


def test_slurm_jobs_per_task_groups_jobs_and_settles_each_one():
    """`hydra.launcher.jobs_per_task`: one array task runs its group's jobs in turn through the
    launcher's per-job call (each its own run_job and ledger claim); a task that fails is each
    of its jobs failed; a requeue runs the same group again (the ledger skips finished jobs).
    The real array is tested on a cluster (tests/test_slurm.py)."""
    from hydra.core.utils import JobStatus

    from hydra_plugins.reinitlab_plugins.slurm_launcher import TaskGroup, settle

    calls = []
    group = [
        (["seed=0"], "hydra.sweep.dir", 0, "a", {}),
        (["seed=1"], "hydra.sweep.dir", 1, "b", {}),
    ]
    runner = TaskGroup(lambda *params: calls.append(params) or params[2])
    assert runner(group) == [0, 1] and calls == group
    again = runner.checkpoint(group)
    assert again.function is runner and again.args == (group,)

    class CancelledTask:
        job_id, state = "7_1", "CANCELLED"
        paths = type("P", (), {"stderr": "/x/7_1_0_log.err"})

        def results(self):
            raise RuntimeError("Job 7_1 was cancelled")

    rets = settle(CancelledTask(), 2)
    assert [r.status for r in rets] == [JobStatus.FAILED, JobStatus.FAILED]
    assert "SLURM job 7_1 failed (state CANCELLED)" in str(rets[0]._return_value)


class CountingLoader:
    """A config loader that counts how often a job is composed from scratch."""

    def __init__(self) -> None:
        self.composed: list[list[str]] = []

    def load_sweep_config(self, config, overrides):
        from omegaconf import OmegaConf

        self.composed.append(list(overrides))
        return OmegaConf.create({"hydra": {"job": {}}, "seed": int(overrides[0].split("=")[1])})


def test_slurm_jobs_travel_composed_and_are_not_composed_again_on_the_node(monkeypatch):
    """With the sweeper's composer, each job's config is composed at submission and travels in
    the job's pickle: the array task runs it as given (its Hydra job id and number set), never
    calling the config loader; the composer itself does not travel. Without a composer (Hydra's
    own sweeper), the task composes as upstream does. The real array: tests/test_slurm.py."""
    import pickle
    import types

    import hydra.core.utils
    import submitit
    from hydra.core.singleton import Singleton
    from omegaconf import OmegaConf

    from hydra_plugins.reinitlab_plugins.slurm_launcher import ReinitlabSlurmLauncher

    ran = []
    monkeypatch.setattr(hydra.core.utils, "run_job", lambda **kw: ran.append(kw) or "done")
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: types.SimpleNamespace(job_id="9_2"))
    loader = CountingLoader()
    launcher = ReinitlabSlurmLauncher(submitit_folder="unused")
    launcher.setup(
        hydra_context=types.SimpleNamespace(config_loader=loader),
        task_function=print,
        config=OmegaConf.create({"hydra": {"sweep": {"dir": "unused"}}}),
    )
    launcher.composer = object()  # what the sweeper sets; never pickled
    travelled = pickle.loads(pickle.dumps(launcher))
    assert travelled.composer is None and launcher.composer is not None

    composed = OmegaConf.create({"hydra": {"job": {}}, "seed": 3})
    state = Singleton.get_state()
    assert travelled(["seed=3"], "hydra.sweep.dir", 4, "x", state, composed) == "done"
    assert loader.composed == []  # not composed again on the node
    (call,) = ran
    assert call["config"] is composed and call["config"].seed == 3
    assert (call["config"].hydra.job.num, call["config"].hydra.job.id) == (4, "9_2")
    assert call["job_dir_key"] == "hydra.sweep.dir" and call["task_function"] is print
    # requeued after a preemption: the same config again, which run_job left read-only
    OmegaConf.set_readonly(composed.hydra, True)
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: types.SimpleNamespace(job_id="9_3"))
    assert travelled(["seed=3"], "hydra.sweep.dir", 4, "x", state, composed) == "done"
    assert ran[1]["config"].hydra.job.id == "9_3" and loader.composed == []
    ran.clear()

    assert launcher(["seed=5"], "hydra.sweep.dir", 6, "y", state) == "done"  # Hydra's sweeper
    assert loader.composed == [["seed=5"]] and ran[0]["config"].seed == 5
    assert ran[0]["config"].hydra.job.num == 6
