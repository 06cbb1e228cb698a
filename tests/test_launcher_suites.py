"""Hydra's LauncherTestSuite and IntegrationTestSuite against the `gpus` launcher, in a fresh
interpreter (tests/helpers/hydra_launcher_suites.py says why)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow  # ~35 s: 20 Hydra tests, each job in its own spawned process
def test_hydra_launcher_suites_pass_against_the_gpus_launcher():
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
    # 9 launcher tests + 11 integration tests, none skipped
    assert re.search(r"^20 passed in", out.stdout, re.M), out.stdout[-2000:]
