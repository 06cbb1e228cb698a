"""Config groups a user types every day: `trainer.max_steps` without `+`, `debug=fast`."""

from __future__ import annotations

from reinitlab.paths import config_dir
from tests.helpers import compose_cfg, needs_glue


def test_max_steps_is_settable_without_plus(tmp_path):
    assert compose_cfg(tmp_path).trainer.max_steps == -1  # Lightning's "no limit"
    assert compose_cfg(tmp_path, "trainer.max_steps=10").trainer.max_steps == 10


def test_there_is_no_dangling_local_group():
    """The defaults list names only groups that exist (cluster settings live in
    conf/launcher/local_cluster.yaml, merged into hydra/launcher=slurm)."""
    text = (config_dir() / "train.yaml").read_text()
    assert "local:" not in text and not (config_dir() / "local").exists()


@needs_glue
def test_debug_fast_is_a_smoke_run(tmp_path):
    from reinitlab.train import train

    cfg = compose_cfg(tmp_path, "model=tiny", "task=rte", "debug=fast")
    assert "_target_" not in cfg.logger  # no W&B
    assert (cfg.data.max_train_samples, cfg.trainer.max_steps) == (64, 4)
    record = train(cfg)
    assert record["steps"] == 4 and record["train_size"] == 64
    assert len(record["history"]) == 1  # validated once, at the end of its single epoch
