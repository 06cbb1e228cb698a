"""What the tests share, imported one way: `from tests.helpers import GLUE, needs_glue, ...`.

* paths: `REPO`, `GLUE` (`$GLUE_DIR`, else `<repo>/../shared/data/glue`), `needs_glue`;
* compose: `compose_cfg(tmp_path, *overrides)` (the job config as train.py composes it), and
  the override sets `TINY` (model=tiny, logger=none) and `FAST` (TINY plus a seconds-long job);
* models: `tiny_config` / `tiny_model` (one factory for every model family) and `padded_batch`;
* movement: `assert_same_end` (two trainings' weights, compared against how far they moved).

The fixtures built on them (`glue_dir`, `cfg_tiny`) are in tests/conftest.py.
"""

from tests.helpers.compose import FAST, TINY, compose_cfg
from tests.helpers.models import FAMILIES, VOCAB, padded_batch, tiny_config, tiny_model
from tests.helpers.movement import assert_same_end
from tests.helpers.paths import GLUE, GLUE_MISSING, REPO, needs_glue

__all__ = [
    "FAMILIES",
    "FAST",
    "GLUE",
    "GLUE_MISSING",
    "REPO",
    "assert_same_end",
    "TINY",
    "VOCAB",
    "compose_cfg",
    "needs_glue",
    "padded_batch",
    "tiny_config",
    "tiny_model",
]
