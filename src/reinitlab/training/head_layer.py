"""The "frozen model + trained head on layer ℓ" variant (Tamkin et al.), as a training option.

`head.layer=ℓ` puts the classification head (pooler + classifier of the sequence-classification
model) on layer ℓ's [CLS]: encoder layers above ℓ are removed from the model, so nothing above ℓ
can reach the logits and no compute is spent on them (ℓ = 0: the embeddings output).
`head.freeze=true` (the default) also freezes the embeddings and layers 1..ℓ
(`requires_grad=False`), so only the pooler and classifier train: a trained-head probe of
layer ℓ. Dropout inside the frozen layers stays as in training mode.

With `head.layer=ℓ` the model has ℓ encoder layers, so `reinit.k` must lie in 1..ℓ+1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import EncoderAdapter


def check_head_config(
    head: Mapping[str, Any] | None, num_layers: int, model_name: str, reinit_k: int | None = None
) -> None:
    """Validate `head.layer` (and `reinit.k` against the cut model) before anything loads."""
    layer = (head or {}).get("layer")
    if layer is None:
        return
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= num_layers:
        raise ReinitlabError(
            f"head.layer={layer!r} is out of range for {model_name}, which has {num_layers} "
            f"encoder layers: give an integer in 0..{num_layers} (0 = the embeddings output), "
            "or null for the usual head on the last layer"
        )
    if reinit_k is not None and reinit_k > layer + 1:
        raise ReinitlabError(
            f"reinit.k={reinit_k} with head.layer={layer}: the model keeps only layers 1..{layer}, "
            f"so k must be in 1..{layer + 1} ({layer + 1}: re-initialize nothing)"
        )


def attach_head_to_layer(model: nn.Module, layer: int | None, freeze: bool = True) -> list[str]:
    """Cut the encoder after `layer` and (optionally) freeze everything below the head.

    Returns the names of the frozen parameters (empty when `layer` is None: model untouched).
    """
    if layer is None:
        return []
    adapter = EncoderAdapter(model)
    layers = adapter.layers
    check_head_config({"layer": layer}, len(layers), type(model).__name__)
    base = getattr(model, "base_model", model)
    adapter.set_layers(list(layers)[:layer])
    model.config.num_hidden_layers = layer
    if not freeze:
        return []
    frozen = []
    for prefix, module in (("embeddings", base.embeddings), ("encoder", base.encoder)):
        for name, param in module.named_parameters():
            param.requires_grad_(False)
            frozen.append(f"{prefix}.{name}")
    return frozen
