"""A sweep's job list from its parsed overrides, as Hydra's basic sweeper expands it, and the
cell a job's overrides name.

Both the reinitlab sweeper (to plan the jobs it launches, and the adaptive seed rule's cells)
and the report (to count the jobs a finished sweep planned, and to find the runs each of the
rule's decisions is about) read overrides; that lives here, in reinitlab, so the report need
not import the Hydra plugin (`hydra_plugins` depends on reinitlab, never the reverse).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from reinitlab.errors import ReinitlabError
from reinitlab.sweep.jobkey import EXCLUDED_KEYS

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override


def expand(overrides: list[Override]) -> list[list[str]]:
    """Every job's overrides: the cartesian product of the sweep's values, in command order
    (what Hydra's basic sweeper does; a later value of one key replaces an earlier one)."""
    choices: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise ReinitlabError(
                f"{o.input_line}: the reinitlab sweeper expands lists and range() sweeps, not "
                f"{o.value_type.name if o.value_type else 'this'} sweeps"
            )
    return [list(job) for job in itertools.product(*choices.values())]


def override_key(override: str) -> str:
    """The dotted key an override sets (`+a.b=1` -> `a.b`)."""
    return override.split("=", 1)[0].lstrip("+~")


def is_reinit_override(override: str) -> bool:
    """Whether an override chooses or sets the reinit scheme (`reinit=...`, `reinit.k=...`)."""
    key = override_key(override)
    return key == "reinit" or key.startswith("reinit.") or key.startswith("reinit@")


def cell_text(overrides: list[str]) -> str:
    """A cell's name: a job's overrides without the scheme, the seed and what is no part of a
    job's identity (paths, logger: `reinitlab.sweep.jobkey.EXCLUDED_KEYS`), e.g. `task=stsb
    model=minilm-l6`; the same for its variants and its baseline, which is what the adaptive
    seed rule pairs and what its decisions (decisions.json) name."""

    def kept(o: str) -> bool:
        key = override_key(o)
        excluded = any(key == k or key.startswith(k + ".") for k in EXCLUDED_KEYS)
        return not (excluded or is_reinit_override(o) or key == "seed")

    return " ".join(o for o in overrides if kept(o))
