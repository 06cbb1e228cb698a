"""Per-layer sentence features of a frozen BERT, extracted once per model state and cached.

A "layer" is one of the `hidden_states` that `output_hidden_states=True` returns: index 0 is
the embeddings output, index ℓ (1..L) the output of encoder layer ℓ (the papers' numbering,
the same as `reinit.k`). Each is pooled two ways: `cls` (the first token) and `mean` (the
average over non-pad tokens).

The cache key covers everything that changes the numbers: a fingerprint of the backbone's
state (its weights and buffers, embeddings + encoder, not the pooler or the head, which do not
touch hidden states, and every forward hook installed in it), a fingerprint of the exact token
ids and labels of the split, the task, split, subset, max length and pooling. So every probe of
the same model state reuses one extraction, and a changed model (another `reinit.k`, a
fine-tuned state, heads masked by `reinit.mode=mask`) never reuses a stale one.

Hooks change hidden states without changing a weight, so the fingerprint reads them from the
model itself rather than from the config: a forward (pre-)hook enters the key through its
`fingerprint()` method, a JSON-able description of what it does to the module's output (the
head masks of `reinitlab.reinit.masking` give the heads they zero). A hook without one, a
parametrization or a replaced `forward` cannot be told apart from another: such a model is
never cached (its features are extracted afresh each time), rather than risk a wrong hit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from reinitlab.atomic import torch_save_atomic
from reinitlab.errors import ReinitlabError
from reinitlab.reinit.adapters import EncoderAdapter

POOLINGS = ("cls", "mean")
FEATURE_CACHE_FORMAT = 2  # 2: buffers and forward hooks in the model fingerprint


def layer_names(num_layers: int) -> list[str]:
    """`embeddings`, `layer_01` .. `layer_LL`: index i of the list is hidden_states[i]."""
    return ["embeddings", *(f"layer_{i:02d}" for i in range(1, num_layers + 1))]


def backbone(model: nn.Module) -> nn.Module:
    """The encoder model that produces hidden states (`model.bert` for BERT classifiers)."""
    return getattr(model, "base_model", model)


# Hooks known to watch a module's output without changing it (they return None), so they need
# no `fingerprint()`: transformers 5 puts one on every layer the first time hidden states are
# asked for, to collect them. (module, function name)
OBSERVING_HOOKS = {("transformers.utils.output_capturing", "output_capturing_hook")}


def _hook_name(hook: Any) -> str:
    kind = hook if callable(hook) and hasattr(hook, "__qualname__") else type(hook)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def forward_changes(model: nn.Module) -> tuple[list[dict[str, Any]], list[str]]:
    """(a description of every forward hook that runs in the backbone, what cannot be described).

    A hook is described by its class and its `fingerprint()`; the second list names each hook
    without one (and each parametrized module or replaced `forward`), which makes the model's
    hidden states impossible to key: `model_fingerprint` is then None.
    """
    from torch.nn.modules import module as torch_module
    from torch.nn.utils import parametrize

    described: list[dict[str, Any]] = []
    unknown: list[str] = []

    def visit(where: str, kind: str, hooks: Mapping[int, Any]) -> None:
        for hook in hooks.values():
            describe = getattr(hook, "fingerprint", None)
            if (getattr(hook, "__module__", None), getattr(hook, "__name__", None)) in (
                OBSERVING_HOOKS
            ):
                continue
            if callable(describe):
                described.append(
                    {"module": where, "kind": kind, "hook": _hook_name(hook), "does": describe()}
                )
            else:
                unknown.append(f"{kind} {_hook_name(hook)} on {where or 'the backbone'}")

    for kind in ("forward_pre_hooks", "forward_hooks"):
        visit("(every module)", kind, getattr(torch_module, f"_global_{kind}", {}))
    for name, module in backbone(model).named_modules():
        for kind in ("forward_pre_hooks", "forward_hooks"):
            visit(name, kind, getattr(module, f"_{kind}", {}))
        if parametrize.is_parametrized(module):
            unknown.append(f"parametrization on {name or 'the backbone'}")
        if "forward" in vars(module):
            unknown.append(f"replaced forward of {name or 'the backbone'}")
    return described, unknown


def model_fingerprint(model: nn.Module) -> str | None:
    """A hash of the backbone's state: every tensor of the embeddings and encoder (names,
    shapes, dtypes, values; buffers included, persistent or not) and every forward hook's
    description; None when a hook cannot be described (see `forward_changes`).

    The pooler and the classifier head are left out: they do not change hidden states, so
    runs that differ only in their head seed share one feature extraction.
    """
    hooks, unknown = forward_changes(model)
    if unknown:
        return None
    base = backbone(model)
    tensors = dict(base.state_dict())
    for name, buffer in base.named_buffers():  # non-persistent ones are not in the state dict
        tensors.setdefault(name, buffer)
    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        if name.startswith("pooler."):
            continue
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if hooks:
        h.update(json.dumps(hooks, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def data_fingerprint(dataset: Iterable[Mapping[str, Any]]) -> str:
    """A hash of the exact token ids, token types and labels the probe will see, in order."""
    h = hashlib.sha256()
    for item in dataset:
        for key in ("input_ids", "token_type_ids", "labels"):
            if key in item:
                t = torch.as_tensor(item[key]).contiguous()
                h.update(key.encode() + str(t.dtype).encode())
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"|")
        h.update(b";")
    return h.hexdigest()[:20]


def feature_cache_key(**parts: Any) -> str:
    """The cache file key (24 hex digits) of one feature tensor: a hash of `parts` and the cache
    format, so a change of format never reads old files."""
    blob = json.dumps({"format": FEATURE_CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@torch.no_grad()
def extract_features(
    model: nn.Module, loader: DataLoader
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({pooling: float32 tensor [num_layers+1, N, hidden]}, labels [N]) in loader order.

    Runs the backbone in eval mode (no dropout) and restores the model's previous mode.
    """
    base = backbone(model)
    was_training = base.training
    base.eval()
    device = next(base.parameters()).device
    pooled: dict[str, list[torch.Tensor]] = {p: [] for p in POOLINGS}
    labels: list[torch.Tensor] = []
    try:
        for batch in loader:
            inputs = {
                k: v.to(device)
                for k, v in batch.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")
            }
            out = base(**inputs, output_hidden_states=True, return_dict=True)
            hidden = torch.stack(out.hidden_states)  # [layers+1, B, T, H]
            mask = inputs["attention_mask"].to(hidden.dtype)[None, :, :, None]
            pooled["cls"].append(hidden[:, :, 0].float().cpu())
            mean = (hidden * mask).sum(dim=2) / mask.sum(dim=2).clamp(min=1.0)
            pooled["mean"].append(mean.float().cpu())
            labels.append(batch["labels"].cpu())
    finally:
        base.train(was_training)
    if not labels:
        raise ReinitlabError("cannot extract features from an empty dataset")
    return {p: torch.cat(v, dim=1) for p, v in pooled.items()}, torch.cat(labels)


@dataclass
class LayerFeatures:
    """Pooled features of one split: `features[i]` is layer_names[i], shape [N, hidden]."""

    features: torch.Tensor
    labels: torch.Tensor
    layer_names: list[str]
    pooling: str
    cache_hit: bool
    path: Path | None


def cached_features(
    model: nn.Module,
    loader: DataLoader,
    pooling: str,
    cache_dir: Path | str | None,
    key_parts: Mapping[str, Any],
    model_key: str | None = None,
    verbose: bool = True,
) -> LayerFeatures:
    """Features of `loader`'s split for `model`, from the cache when this state was seen before.

    `key_parts` names the split (task, split, subset, max length...); the model fingerprint,
    a hash of the data itself and the pooling are added here. On a miss both poolings are
    extracted (one forward pass) and written, so the other pooling is a hit later. A model
    whose state cannot be fingerprinted (a hook without `fingerprint()`) is neither read from
    nor written to the cache.
    """
    if pooling not in POOLINGS:
        raise ReinitlabError(f"probe.pooling={pooling!r} is not allowed; choose from {POOLINGS}")
    model_key = model_key or model_fingerprint(model)
    if model_key is None and cache_dir is not None:
        if verbose:
            why = "; ".join(forward_changes(model)[1])
            print(
                f"[reinitlab] probe features: not cached, the model's hidden states cannot be "
                f"fingerprinted ({why}); give the hook a fingerprint() method to cache them",
                file=sys.stderr,
            )
        cache_dir = None
    data_key = data_fingerprint(loader.dataset)
    num_layers = EncoderAdapter(model).num_layers
    names = layer_names(num_layers)

    def path_for(p: str) -> Path | None:
        if cache_dir is None:
            return None
        key = feature_cache_key(model=model_key, data=data_key, pooling=p, **dict(key_parts))
        return Path(cache_dir).expanduser() / "features" / f"{key}.pt"

    label = ", ".join(f"{k}={v}" for k, v in key_parts.items())
    path = path_for(pooling)
    if path is not None and path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            if verbose:
                print(
                    f"[reinitlab] probe features: cache hit ({label}, {pooling})", file=sys.stderr
                )
            return LayerFeatures(blob["features"], blob["labels"], names, pooling, True, path)
        except Exception:  # unreadable entry: extract again
            path.unlink(missing_ok=True)
    feats, labels = extract_features(model, loader)
    if len(feats[pooling]) != len(names):
        raise ReinitlabError(
            f"the model returned {len(feats[pooling])} hidden states, expected {len(names)}"
        )
    for p in POOLINGS:
        target = path_for(p)
        if target is not None:
            torch_save_atomic(
                target, {"features": feats[p], "labels": labels, "key": dict(key_parts)}
            )
    if verbose:
        print(
            f"[reinitlab] probe features: extracted {labels.shape[0]} examples x "
            f"{len(names)} layers ({label})",
            file=sys.stderr,
        )
    return LayerFeatures(feats[pooling], labels, names, pooling, False, path)
