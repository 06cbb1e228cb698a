"""Shared pytest hooks and fixtures.

* tests marked `gpu` are skipped, with the reason, where CUDA is absent;
* `glue_dir`: the GLUE folder (`$GLUE_DIR`, else `<repo>/../shared/data/glue`); a test that
  takes it is skipped, naming the folder, where it is absent;
* every test ends with the Ctrl-C and SIGTERM handlers it started with: a job interrupted in this
  process (Lightning ignores SIGINT while it shuts down) must not leave SIGINT ignored, or every
  process a later test starts inherits the ignore and cannot be interrupted;
* `cfg_tiny`: the job config composed as train.py does with model=tiny, logger=none, outputs and
  caches under the test's tmp_path (as lightning-hydra-template's `cfg_train`).

The constants behind them are imported by tests from `tests.helpers`, never from here.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.helpers.paths import GLUE, GLUE_MISSING


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch  # only when a gpu test was collected

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The GLUE TSVs' folder; skips the test where there is none."""
    if not GLUE.is_dir():
        pytest.skip(GLUE_MISSING)
    return GLUE


@pytest.fixture
def cfg_tiny(tmp_path):
    """The job config for model=tiny, logger=none, writing only under tmp_path."""
    from hydra.core.global_hydra import GlobalHydra

    from tests.helpers.compose import TINY, compose_cfg

    yield compose_cfg(tmp_path, *TINY)
    GlobalHydra.instance().clear()
