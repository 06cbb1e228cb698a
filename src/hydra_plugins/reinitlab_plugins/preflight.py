"""A Hydra callback that checks, before a single run starts, that it can write its output.

Hydra creates the run directory itself, so a read-only or mistyped `hydra.run.dir` would end
in Hydra's traceback, and an unwritable cache only after the model had loaded. This runs
first and names the path and the option that sets it. (Sweeps check the same in
reinitlab's sweeper, before any job is launched.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class PreflightCallback(Callback):
    """Fail a single run before Hydra or the model touch the disk when its run dir or cache is
    unwritable (registered in conf/hydra/default.yaml's `hydra.callbacks`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check the run dir and data cache are writable; if not, exit 2 naming path and option."""
        from reinitlab.errors import ReinitlabError
        from reinitlab.sweep.ledger import check_writable

        checks = [(config.hydra.run.dir, "hydra.run.dir")]
        cache_dir = config.get("data", {}).get("cache_dir")
        if cache_dir:
            checks.append((cache_dir, "data.cache_dir (or $REINITLAB_CACHE_DIR)"))
        try:
            for path, option in checks:
                check_writable(Path(str(path)), option)
        except ReinitlabError as e:
            # Hydra turns a callback's exception into a warning; this must stop the run.
            print(f"reinitlab: error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
