"""OmegaConf resolvers the bundled configs use; registered on `import reinitlab`.

`reinitlab_uid` makes run/sweep directory names unique when two sweeps start in the same
second. It is cached per config, and Hydra copies the cache into every job's config of a
sweep, so all jobs of one sweep agree on the directory.

`reinitlab_sweep:WHAT` gives the `experiment/` presets sweep values derived from the chosen
model (`resolve_sweep`; the values themselves: `reinitlab.reinit.sweeps`).

`reinitlab_hash` names a sweep job's directory after its overrides as well as its number, so a
re-run whose jobs are numbered differently never writes into another job's directory.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Any

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


def model_sizes(model_spec: Any) -> tuple[int, int]:
    """(layers, heads per layer) from a `model/` config, without loading weights."""
    from reinitlab.training.models import load_config  # imports transformers: only when used

    config = load_config(model_spec)
    return int(config.num_hidden_layers), int(config.num_attention_heads)


def resolve_sweep(what: str, *, _root_: Any) -> str:
    """The `reinitlab_sweep` resolver: the sweep for the model chosen in this config (its
    config read when the sweep starts; cheap, no weights). Outside a job's config (`--cfg
    hydra` prints the hydra node alone) there is no model to read: a placeholder says so
    instead of failing."""
    from reinitlab.reinit.sweeps import sweep_values

    if "model" not in _root_:
        return f"<the {what} sweep of the chosen model: see --cfg job>"
    num_layers, num_heads = model_sizes(_root_.model)
    width = int(_root_.reinit.get("width", 3) or 3) if what == "blocks" else 3
    return sweep_values(what, num_layers, num_heads, width)


def sweep_or_exit(what: str, *, _root_: Any) -> str:
    """`resolve_sweep` as registered: a refusal (no model offline, a bad option) is printed
    once and exits 2 here; raised, OmegaConf would wrap it and Hydra print a long traceback
    around the one line that matters."""
    import sys

    from reinitlab.errors import ReinitlabError

    try:
        return resolve_sweep(what, _root_=_root_)
    except ReinitlabError as e:
        print(f"reinitlab: error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def register_sweeps() -> None:
    """Register `reinitlab_sweep` and `reinitlab_hash` (8 hex digits of sha256): the resolvers
    that need no per-config cache."""
    OmegaConf.register_new_resolver("reinitlab_sweep", sweep_or_exit, replace=True)
    OmegaConf.register_new_resolver(
        "reinitlab_hash",
        lambda text="": hashlib.sha256(str(text).encode()).hexdigest()[:8],
        replace=True,
    )
