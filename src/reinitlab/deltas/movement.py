"""How far each encoder layer and attention head moved, and how its representations changed.

Pure PyTorch (the Lightning glue is `reinitlab.deltas.callback`). Everything is relative:
‖θ − θ_ref‖ / ‖θ_ref‖ over a group of parameters, so layers of different sizes compare.

* `snapshot_encoder(model)`: a CPU copy of every encoder layer's parameters (the reference
  lives in host memory, where it is cheapest), keyed by the parameter's name inside its layer.
* `layer_movement(model, ref)`: per layer, for the whole layer and its attention / feed-forward
  parts. The norm of a group is sqrt(sum of the per-tensor squared norms): one vectorised
  norm per tensor, never a loop over scalars.
* `head_movement(model, ref)`: per (layer, head), over the head's query/key/value rows (weights
  and biases) and its input columns of the attention output projection.
* `linear_cka(X, Y)`: centred linear CKA (Kornblith et al., 2019) between two representations
  of the same examples.

Layers and heads are found through `reinitlab.reinit.adapters.EncoderAdapter`, so every model
family the reinit schemes support is measured the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reinitlab.reinit.adapters import EncoderAdapter

MOVEMENT_PARTS = ("all", "attention", "ffn")
Snapshot = list[dict[str, Tensor]]  # per layer: {name inside the layer: CPU tensor}


def snapshot_encoder(model: nn.Module) -> Snapshot:
    """A detached CPU float32 copy of every encoder layer's parameters."""
    adapter = EncoderAdapter(model)
    return [
        {
            name: p.detach().to("cpu", torch.float32, copy=True)
            for name, p in adapter.layer(i).named_parameters()
        }
        for i in range(adapter.num_layers)
    ]


def _names_by_part(adapter: EncoderAdapter, index: int) -> dict[str, list[str]]:
    """Names (inside layer `index`) of the parameters of each part; `all` is the whole layer."""
    layer = adapter.layer(index)
    name_of = {id(p): n for n, p in layer.named_parameters()}
    out = {"all": list(name_of.values())}
    for part in ("attention", "ffn"):
        out[part] = [
            name_of[id(p)] for m in adapter.part_modules(index, [part]) for p in m.parameters()
        ]
    return out


def _sq_norms(current: list[Tensor], reference: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(Σ‖cur − ref‖², Σ‖ref‖²) over paired tensors, computed on the current tensors' device
    with one transfer of the results to the host (one sync per group, not per tensor)."""
    diffs, bases = [], []
    for cur, ref in zip(current, reference, strict=True):
        ref_d = ref.to(cur.device, non_blocking=True)
        diffs.append(torch.linalg.vector_norm(cur.detach().float() - ref_d).double())
        bases.append(torch.linalg.vector_norm(ref_d).double())
    sums = torch.stack([torch.stack(diffs).pow(2).sum(), torch.stack(bases).pow(2).sum()])
    diff, base = sums.cpu()
    return diff, base


def _relative(diff_sq: Tensor, base_sq: Tensor) -> Tensor:
    return diff_sq.sqrt() / base_sq.sqrt().clamp_min(torch.finfo(torch.float64).tiny)


@torch.no_grad()
def layer_movement(model: nn.Module, reference: Snapshot) -> dict[str, Tensor]:
    """{"all" | "attention" | "ffn": float64 tensor [L]} of ‖θ − θ_ref‖ / ‖θ_ref‖ per layer."""
    adapter = EncoderAdapter(model)
    if len(reference) != adapter.num_layers:
        raise ValueError(
            f"reference has {len(reference)} layers, the model has {adapter.num_layers}"
        )
    out = {part: torch.zeros(adapter.num_layers, dtype=torch.float64) for part in MOVEMENT_PARTS}
    for i in range(adapter.num_layers):
        params = dict(adapter.layer(i).named_parameters())
        for part, names in _names_by_part(adapter, i).items():
            diff, base = _sq_norms([params[n] for n in names], [reference[i][n] for n in names])
            out[part][i] = _relative(diff, base)
    return out


def _per_head_sq(t: Tensor, num_heads: int, rows: bool) -> Tensor:
    """Squared norm per head of a q/k/v weight or bias (rows) or an out weight (columns)."""
    # q/k/v weight [H*d, hidden] or bias [H*d]: head h owns rows h*d..(h+1)*d;
    # out weight [hidden, H*d]: head h owns input columns h*d..(h+1)*d
    t = t.reshape(num_heads, -1) if rows else t.t().reshape(num_heads, -1)
    return t.double().pow(2).sum(dim=1)


@torch.no_grad()
def head_movement(model: nn.Module, reference: Snapshot) -> Tensor:
    """float64 [L, H]: ‖θ_head − θ_head,ref‖ / ‖θ_head,ref‖, where a head's parameters are its
    query/key/value rows (weights and biases) and its input columns of the output projection
    (the output bias is shared by all heads and left out)."""
    adapter = EncoderAdapter(model)
    heads = adapter.num_heads
    out = torch.zeros(adapter.num_layers, heads, dtype=torch.float64)
    for i in range(adapter.num_layers):
        name_of = {id(p): n for n, p in adapter.layer(i).named_parameters()}
        q, k, v, o = adapter.attention_projections(i)
        device = q.weight.device
        diff = torch.zeros(heads, dtype=torch.float64, device=device)
        base = torch.zeros(heads, dtype=torch.float64, device=device)
        pieces = [(m.weight, True) for m in (q, k, v)] + [(o.weight, False)]
        pieces += [(m.bias, True) for m in (q, k, v) if m.bias is not None]
        for param, rows in pieces:
            ref = reference[i][name_of[id(param)]].to(param.device)
            diff += _per_head_sq(param.detach().float() - ref, heads, rows)
            base += _per_head_sq(ref, heads, rows)
        out[i] = _relative(diff.cpu(), base.cpu())
    return out


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA between representations x [n, p] and y [n, q] of the same n examples:
    ‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F) with column-centred Xᶜ, Yᶜ (Kornblith et al. 2019,
    eq. 5, feature-space form). 1 for identical representations; invariant to orthogonal
    transforms and isotropic scaling of either."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need [n, p] and [n, q] with the same n, got {x.shape}, {y.shape}")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.t() @ x) ** 2
    denom = torch.linalg.matrix_norm(x.t() @ x) * torch.linalg.matrix_norm(y.t() @ y)
    if denom == 0:
        return float("nan")  # a constant representation has no similarity structure
    return float(cross / denom)
