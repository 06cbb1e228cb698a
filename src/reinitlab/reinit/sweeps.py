"""Sweep values the `experiment/` presets derive from the chosen model.

A preset cannot hard-code "k = 1..L+1" or "layers 1, 2, L-1, L": L depends on `model=...`.
The resolver `${reinitlab_sweep:WHAT}` (used in `hydra.sweeper.params`) reads the model's
config (cheap: no weights) when the sweep starts and returns Hydra's sweep syntax. Every list
starts with the scheme's baseline value, so a preset's sweep is self-contained.
"""

from __future__ import annotations

from typing import Any


def model_sizes(model_spec: Any) -> tuple[int, int]:
    """(layers, heads per layer) from a `model/` config, without loading weights."""
    from reinitlab.training.models import load_config

    config = load_config(model_spec)
    return int(config.num_hidden_layers), int(config.num_attention_heads)


def edge_layers(num_layers: int) -> list[int]:
    """The first two and last two layers (1-based), e.g. 1,2,11,12 for BERT-base."""
    return sorted({1, 2, num_layers - 1, num_layers} & set(range(1, num_layers + 1)))


def sweep_values(what: str, num_layers: int, num_heads: int, width: int = 3) -> str:
    """Hydra sweep syntax for one preset key (a scheme's `preset` name); baseline first."""
    from reinitlab.reinit.schemes import SCHEMES

    presets = {s.preset: s for s in SCHEMES.values() if s.preset}
    if what not in presets:
        raise ValueError(f"unknown sweep {what!r}; known: {list(presets)}")
    return presets[what].sweep(num_layers, num_heads, width)


def resolve_sweep(what: str, *, _root_: Any) -> str:
    """The `reinitlab_sweep` resolver: the sweep for the model chosen in this config. Outside
    a job's config (`--cfg hydra` prints the hydra node alone) there is no model to read: a
    placeholder says so instead of failing."""
    if "model" not in _root_:
        return f"<the {what} sweep of the chosen model: see --cfg job>"
    num_layers, num_heads = model_sizes(_root_.model)
    width = int(_root_.reinit.get("width", 3) or 3) if what == "blocks" else 3
    return sweep_values(what, num_layers, num_heads, width)
