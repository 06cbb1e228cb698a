"""One small adapter per encoder family: where the layers, heads and sub-modules live.

Everything else in `reinitlab.reinit` asks the adapter instead of hard-coding module names,
so a scheme works the same on BERT, RoBERTa, ELECTRA (one layout), DistilBERT and MPNet.
Layers are indexed 0-based here (config layer 1 = index 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from reinitlab.errors import ReinitlabError

PARTS = ("attention", "ffn", "layernorm")


@dataclass(frozen=True)
class Layout:
    """Dotted module paths of one family (relative to the base model, or to one layer)."""

    family: str
    model_types: tuple[str, ...]
    layers: str  # the ModuleList of transformer layers
    embeddings: tuple[str, ...]  # modules reset by the `embeddings` scheme (missing ones skipped)
    pooler: str | None
    qkvo: tuple[str, str, str, str]  # query, key, value, attention output projection
    parts: dict[str, tuple[str, ...]]  # sub-module groups of one layer (they cover the layer)


# query, key, value, attention output projection: also the whole attention part of a layer
BERT_QKVO = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
)
BERT_LAYOUT = Layout(
    family="bert",
    model_types=("bert", "roberta", "electra"),
    layers="encoder.layer",
    embeddings=("embeddings", "embeddings_project"),  # ELECTRA projects E -> H when they differ
    pooler="pooler",
    qkvo=BERT_QKVO,
    parts={
        "attention": BERT_QKVO,
        "ffn": ("intermediate.dense", "output.dense"),
        "layernorm": ("attention.output.LayerNorm", "output.LayerNorm"),
    },
)

DISTILBERT_QKVO = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin")
DISTILBERT_LAYOUT = Layout(
    family="distilbert",
    model_types=("distilbert",),
    layers="transformer.layer",
    embeddings=("embeddings",),
    pooler=None,
    qkvo=DISTILBERT_QKVO,
    parts={
        "attention": DISTILBERT_QKVO,
        "ffn": ("ffn.lin1", "ffn.lin2"),
        "layernorm": ("sa_layer_norm", "output_layer_norm"),
    },
)

# MPNet (all-mpnet-base-v2): BERT's stack under other names. Its relative position bias
# (`encoder.relative_attention_bias`, one table shared by every layer) is position information,
# so the `embeddings` scheme resets it with the absolute position embeddings; layer schemes
# leave it alone, as they leave the position embeddings. Its sequence classifier has no pooler.
MPNET_QKVO = ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o")
MPNET_LAYOUT = Layout(
    family="mpnet",
    model_types=("mpnet",),
    layers="encoder.layer",
    embeddings=("embeddings", "encoder.relative_attention_bias"),
    pooler="pooler",
    qkvo=MPNET_QKVO,
    parts={
        "attention": MPNET_QKVO,
        "ffn": ("intermediate.dense", "output.dense"),
        "layernorm": ("attention.LayerNorm", "output.LayerNorm"),
    },
)

LAYOUTS = (BERT_LAYOUT, DISTILBERT_LAYOUT, MPNET_LAYOUT)
SUPPORTED_MODEL_TYPES = tuple(t for layout in LAYOUTS for t in layout.model_types)


def layout_for(model_type: str | None, what: str = "the model") -> Layout:
    """The layout of a `config.model_type`; a clear error naming the supported ones."""
    for layout in LAYOUTS:
        if model_type in layout.model_types:
            return layout
    raise ReinitlabError(
        f"{what} has model type {model_type!r}, which reinitlab's reinit schemes do not support; "
        f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def _get(root: nn.Module, path: str) -> nn.Module | None:
    module: nn.Module | None = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


class EncoderAdapter:
    """A model seen through its family's layout.

    `attention_projections(i)` gives layer i's (q, k, v, out) Linear modules; with `head_size`
    d, head h owns rows h*d..(h+1)*d of q/k/v and input columns h*d..(h+1)*d of out.
    """

    def __init__(self, model: nn.Module):
        config = getattr(model, "config", None)
        self.model = model
        self.layout = layout_for(getattr(config, "model_type", None), type(model).__name__)
        self.base = getattr(model, "base_model", model)
        self.num_heads = int(config.num_attention_heads)
        self.hidden_size = int(config.hidden_size)
        self.head_size = self.hidden_size // self.num_heads
        if self.layers_container() is None:
            raise ReinitlabError(
                f"{type(model).__name__}: no encoder layers at <base>.{self.layout.layers}"
            )

    # -- layers ---------------------------------------------------------------------------
    def layers_container(self) -> nn.ModuleList | None:
        """The layer ModuleList at the layout's path, or None when the model has none there."""
        layers = _get(self.base, self.layout.layers)
        return layers if isinstance(layers, nn.ModuleList) else None

    @property
    def layers(self) -> nn.ModuleList:
        """The encoder's layer stack, in its current order."""
        return self.layers_container()

    @property
    def num_layers(self) -> int:
        """L, the number of encoder layers."""
        return len(self.layers)

    def set_layers(self, layers: Iterable[nn.Module]) -> None:
        """Replace the layer stack (e.g. reordered); the modules and their weights are kept."""
        parent_path, _, attr = self.layout.layers.rpartition(".")
        parent = _get(self.base, parent_path) if parent_path else self.base
        setattr(parent, attr, nn.ModuleList(list(layers)))

    def layer(self, index: int) -> nn.Module:
        """Layer `index` (0-based) of the current stack."""
        return self.layers[index]

    def _sub(self, index: int, path: str) -> nn.Module:
        module = _get(self.layer(index), path)
        if module is None:
            raise ReinitlabError(
                f"{type(self.model).__name__}: layer {index + 1} has no sub-module {path!r}"
            )
        return module

    def part_modules(self, index: int, parts: Iterable[str]) -> list[nn.Module]:
        """Layer `index`'s sub-modules of the given parts (attention, ffn, layernorm)."""
        return [self._sub(index, path) for part in parts for path in self.layout.parts[part]]

    # -- heads ----------------------------------------------------------------------------
    def attention_projections(
        self, index: int
    ) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
        """Layer `index`'s (query, key, value, output) projections (0-based index)."""
        q, k, v, o = (self._sub(index, path) for path in self.layout.qkvo)
        return q, k, v, o

    def head_slice(self, head: int) -> slice:
        """Rows of q/k/v (and input columns of out) owned by head `head` (0-based)."""
        return slice(head * self.head_size, (head + 1) * self.head_size)

    # -- the rest of the encoder ----------------------------------------------------------
    def embedding_modules(self) -> list[nn.Module]:
        """What the `embeddings` scheme resets: the layout's modules this model has."""
        found = [_get(self.base, path) for path in self.layout.embeddings]
        return [m for m in found if m is not None]

    def pooler(self) -> nn.Module | None:
        """The pooler, or None for a family or model without one."""
        return _get(self.base, self.layout.pooler) if self.layout.pooler else None
