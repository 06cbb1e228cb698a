"""Hydra's LauncherTestSuite and IntegrationTestSuite against the `gpus` and `stacked`
launchers, in a fresh interpreter (tests/helpers/hydra_launcher_suites.py says why)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow  # ~1 min: 40 Hydra tests, the gpus launcher's jobs in spawned processes
def test_hydra_launcher_suites_pass_against_the_gpus_and_stacked_launchers():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(REPO / "tests" / "helpers" / "hydra_launcher_suites.py"),
        ],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    # 9 launcher tests + 11 integration tests per launcher, none skipped
    assert re.search(r"^40 passed(,| in)", out.stdout, re.M), out.stdout[-2000:]
