"""Hydra's own launcher test suites, run against the `gpus` (on fake GPUs) and `stacked`
launchers (another app's jobs are no reinit jobs: they run solo, as it runs them): the
contract every Hydra launcher keeps (sweeps of 1 and 2 jobs, hydra overrides not swept,
strict keys, custom resolvers, job dirs, task names, orig dir), as Hydra's plugins test it.

Run in a fresh interpreter by tests/test_launcher_suites.py, as Hydra runs its plugins'
suites: they expect a pristine Hydra (importing reinitlab's app sets Hydra's version base)."""

from __future__ import annotations

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite


@pytest.fixture(autouse=True)
def fake_gpus(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("REINITLAB_FAKE_GPUS", "0,1")
    monkeypatch.setenv("REINITLAB_GPU_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


@pytest.mark.parametrize("launcher_name, overrides", [("gpus", []), ("stacked", [])])
class TestLaunchers(LauncherTestSuite):
    """The launcher contract."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({"defaults": [{"override hydra/launcher": name}]}, ["-m"]) for name in ("gpus", "stacked")],
)
class TestLaunchersIntegration(IntegrationTestSuite):
    """Whole apps in subprocesses, launched through the `gpus` and `stacked` launchers."""
