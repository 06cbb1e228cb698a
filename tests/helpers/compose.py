"""Compose a job config exactly as `train.py` does, with outputs and caches under a tmp dir."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from reinitlab.paths import config_dir
from tests.helpers.paths import GLUE

TINY = ("model=tiny", "logger=none")  # the test-sized model, no W&B
FAST = (*TINY, "data.max_train_samples=64", "trainer.max_epochs=1")  # a job in seconds


def compose_cfg(tmp_path: Path, *overrides: str):
    """The job config as `train.py` composes it; output and caches under tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={tmp_path / 'out'}",
                f"data.glue_dir={GLUE}",
                f"data.cache_dir={tmp_path / 'cache'}",
                *overrides,
            ],
            return_hydra_config=True,
        )
        HydraConfig().set_config(cfg)
    return cfg
