"""A reinit scheme defined outside reinitlab (one class; its config is toy_conf/reinit/top.yaml):
re-initialize the top `n` encoder layers. Importing this module registers it."""

from __future__ import annotations

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import Scheme, Selection, register


@register
class Top(Scheme):
    name = "top"
    layer_scheme = True
    position = ("n",)

    def select(self, p, num_layers, num_heads, model, common):
        n = p.get("n")
        if n is None:
            return Selection(**common)
        if not isinstance(n, int) or not 1 <= n <= num_layers:
            raise ReinitlabError(f"reinit.n={n!r}: give an integer in 1..{num_layers}")
        return Selection(**common, layers=tuple(range(num_layers - n, num_layers)))

    def label(self, p, num_layers):
        return None if p.get("n") is None else f"top {p['n']}"


if __name__ == "__main__":  # `python toy_scheme.py <train.py args>`: train with it registered
    import sys

    from reinitlab.train import main

    sys.argv = [sys.argv[0], *sys.argv[1:]]
    main()
