"""A sweep's job list from its parsed overrides, as Hydra's basic sweeper expands it.

Both the reinitlab sweeper (to plan the jobs it launches) and the report (to count the jobs a
finished sweep planned) expand sweeps; the one expansion lives here, in reinitlab, so the
report need not import the Hydra plugin (`hydra_plugins` depends on reinitlab, never the
reverse).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from reinitlab.errors import ReinitlabError

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
