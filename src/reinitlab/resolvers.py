"""OmegaConf resolvers the bundled configs use; registered on `import reinitlab`.

`reinitlab_uid` makes run/sweep directory names unique when two sweeps start in the same
second. It is cached per config, and Hydra copies the cache into every job's config of a
sweep, so all jobs of one sweep agree on the directory.

`reinitlab_sweep:WHAT` gives the `experiment/` presets sweep values derived from the chosen
model (see `reinitlab.reinit.sweeps`).
"""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf


def register() -> None:
    OmegaConf.register_new_resolver(
        "reinitlab_uid",
        lambda: f"{os.getpid():x}{secrets.token_hex(2)}",
        use_cache=True,
        replace=True,
    )
    register_sweeps()


def _sweep(what: str, *, _root_):
    from reinitlab.reinit.sweeps import resolve_sweep  # imports transformers: only when used

    return resolve_sweep(what, _root_=_root_)


def register_sweeps() -> None:
    OmegaConf.register_new_resolver("reinitlab_sweep", _sweep, replace=True)
