"""OmegaConf resolvers the bundled configs use; registered on `import reinitlab`.

`reinitlab_uid` makes run/sweep directory names unique when two sweeps start in the same
second. It is cached per config, and Hydra copies the cache into every job's config of a
sweep, so all jobs of one sweep agree on the directory.

`reinitlab_sweep:WHAT` gives the `experiment/` presets sweep values derived from the chosen
model (see `reinitlab.reinit.sweeps`).

`reinitlab_hash` names a sweep job's directory after its overrides as well as its number, so a
re-run whose jobs are numbered differently never writes into another job's directory.
"""

from __future__ import annotations

import hashlib
import os
import secrets

from omegaconf import OmegaConf


def register() -> None:
    """Register every reinitlab resolver (`reinitlab_uid` cached per config, so one value per
    sweep); safe to call again."""
    OmegaConf.register_new_resolver(
        "reinitlab_uid",
        lambda: f"{os.getpid():x}{secrets.token_hex(2)}",
        use_cache=True,
        replace=True,
    )
    register_sweeps()


def _sweep(what: str, *, _root_):
    """A refusal (no model offline, a bad option) is printed once and exits 2 here: raised,
    OmegaConf would wrap it and Hydra print a long traceback around the one line that matters."""
    import sys

    from reinitlab.errors import ReinitlabError
    from reinitlab.reinit.sweeps import resolve_sweep  # imports transformers: only when used

    try:
        return resolve_sweep(what, _root_=_root_)
    except ReinitlabError as e:
        print(f"reinitlab: error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def register_sweeps() -> None:
    """Register `reinitlab_sweep` and `reinitlab_hash` (8 hex digits of sha256): the resolvers
    that need no per-config cache."""
    OmegaConf.register_new_resolver("reinitlab_sweep", _sweep, replace=True)
    OmegaConf.register_new_resolver(
        "reinitlab_hash",
        lambda text="": hashlib.sha256(str(text).encode()).hexdigest()[:8],
        replace=True,
    )
