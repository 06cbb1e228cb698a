"""K copies of one sequence classifier trained as one: parameters stacked, one forward for all.

A reinit study trains many models that share the architecture, the data and the batch order
and differ only in their weights. Stacking member k's parameter `p` ([*shape]) into one
tensor [K, *shape] and running the model under `torch.func.vmap` turns each of the model's K
small matrix multiplies into one batched multiply, so a GPU that one small model leaves idle
does K models' work per kernel launch.

Exactly what a solo run computes, member by member:

- the forward is the members' own architecture (`functional_call` on a weightless copy on the
  `meta` device) with member k's weights; inputs are shared, never stacked, so mask and
  packing code that branches on the input runs once, as in a solo run;
- gradients: the loss is the sum of the member losses, and no operation mixes members, so
  d(sum)/d(member k's weights) is member k's own gradient;
- clipping is per member (`clip_grad_norm_`: each member's norm over its own parameters);
- AdamW is elementwise, so one optimizer over stacked tensors is K optimizers (same recipe);
- head masks (`mode: mask`) differ between members: each masked layer's output projection
  reads a keep-vector buffer, stacked [K, hidden] and sliced per member by vmap;
- dropout draws different masks for each member (`randomness="different"`).

Pure PyTorch: the Lightning glue is `reinitlab.stack.module`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from reinitlab.reinit.adapters import EncoderAdapter
from reinitlab.reinit.masking import head_keep, remove_head_mask

# Attention implementations a stack can run; under vmap "eager" is a batched matmul, while
# "sdpa" falls back to one kernel call per member wherever torch lacks a batching rule for the
# fused kernel (CPU flash attention, as of torch 2.13).
STACK_ATTENTION = ("eager", "sdpa")
KEEP_BUFFER = "reinitlab_head_keep"  # buffer on a masked layer's output projection, in the template


def _escape(name: str) -> str:
    return name.replace(".", "__")


class _KeepFromBuffer:
    """Forward pre-hook: multiply the projection's input by its `KEEP_BUFFER` (member k's
    keep-vector under vmap): the head mask of `reinitlab.reinit.masking`, per member."""

    def __call__(self, module: nn.Module, args: tuple):
        return (args[0] * getattr(module, KEEP_BUFFER), *args[1:])

    def fingerprint(self) -> dict[str, str]:
        """For caches keyed by model state: the keep-vector it applies is the module's
        `KEEP_BUFFER`, whose values the state's buffers already carry."""
        return {"multiply_input_by_buffer": KEEP_BUFFER}


def set_attention(model: nn.Module, implementation: str) -> None:
    """Switch a transformers model (and every sub-config) to `implementation` attention."""
    if implementation not in STACK_ATTENTION:
        raise ValueError(f"attention {implementation!r}; allowed: {', '.join(STACK_ATTENTION)}")
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = implementation


class StackedModel(nn.Module):
    """K members of one architecture; `parameters()` are the stacked [K, ...] tensors.

    `members` keep their own modules (hooks, heads); their weights are copied in here once and
    copied back with `copy_member_into`. `masked_heads[k]` lists member k's (layer, head)
    pairs, 0-based, as `SchemePlan.masked_heads` does.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        masked_heads: Sequence[Sequence[tuple[int, int]]] | None = None,
        attention: str = "eager",
    ):
        super().__init__()
        if not members:
            raise ValueError("a stack needs at least one member")
        shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in members]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("stack members must have the same parameters (names and shapes)")
        self.size = len(members)
        params, _ = stack_module_state(list(members))  # new leaf tensors [K, *shape]
        self.names = list(params)
        self.weights = nn.ParameterDict(
            {_escape(n): nn.Parameter(t.detach().clone()) for n, t in params.items()}
        )
        for n, p in members[0].named_parameters():
            self.weights[_escape(n)].requires_grad_(p.requires_grad)
        # Constant buffers (position ids ...) are the same in every member: shared, not stacked.
        self.shared = [n for n, _ in members[0].named_buffers()]
        for n, b in members[0].named_buffers():
            self.register_buffer(_escape("shared." + n), b, persistent=False)
        template = copy.deepcopy(members[0])
        set_attention(template, attention)
        adapter = EncoderAdapter(template)
        masked = [list(h) for h in (masked_heads or [[] for _ in members])]
        layers = sorted({layer for heads in masked for layer, _ in heads})
        self.keep_names = []
        for layer in layers:
            out = adapter.attention_projections(layer)[3]
            remove_head_mask(out)  # a member's own hook, copied with it; replaced by the buffer
            width = out.in_features
            keep = torch.stack(
                [
                    head_keep([h for li, h in heads if li == layer], adapter.head_size, width)
                    for heads in masked
                ]
            )
            name = next(n for n, m in template.named_modules() if m is out) + "." + KEEP_BUFFER
            out.register_buffer(KEEP_BUFFER, torch.ones(width), persistent=False)
            out.register_forward_pre_hook(_KeepFromBuffer())
            self.register_buffer(_escape("keep." + name), keep, persistent=False)
            self.keep_names.append(name)
        for layer in range(adapter.num_layers):  # members' hooks must not run in the template
            if layer not in layers:
                remove_head_mask(adapter.attention_projections(layer)[3])
        # The template holds no weights (meta) and is not a submodule: `.to()` and
        # `parameters()` see only the stacked tensors.
        self.__dict__["template"] = template.to("meta")

    def _stacked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = {n: self.weights[_escape(n)] for n in self.names}
        keep = {n: getattr(self, _escape("keep." + n)) for n in self.keep_names}
        return params, keep

    def _shared(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, _escape("shared." + n)) for n in self.shared}

    def run(self, inputs: dict[str, torch.Tensor], call: Callable | None = None):
        """(loss [K], logits [K, batch, labels]) of every member on the shared `inputs` (which
        must hold `labels`). `call(model, inputs)` runs the model on them (default:
        `model(**inputs)`; a packer's `run` packs them first)."""
        template, shared = self.template, self._shared()
        template.train(self.training)  # not a submodule: follow this module's mode
        call = call or (lambda model, batch: model(**batch))

        def one(params, keep):
            state = {**params, **keep, **shared}

            def model(**kwargs):
                return functional_call(template, state, kwargs=kwargs, strict=True)

            model.config = template.config  # type: ignore[attr-defined]
            out = call(model, inputs)
            return out.loss, out.logits

        params, keep = self._stacked()
        return vmap(one, randomness="different")(params, keep)

    def named_stacked(self) -> list[tuple[str, nn.Parameter]]:
        """(member parameter name, stacked tensor) pairs: names as in each member."""
        return [(n, self.weights[_escape(n)]) for n in self.names]

    @torch.no_grad()
    def grad_norms(self) -> torch.Tensor:
        """Each member's gradient norm over all its parameters, [K] (fp32)."""
        sq = torch.zeros(self.size, device=next(self.parameters()).device)
        for p in self.parameters():
            if p.grad is not None:
                sq += p.grad.detach().float().flatten(1).pow(2).sum(dim=1)
        return sq.sqrt()

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """`torch.nn.utils.clip_grad_norm_` for each member on its own: member k's gradients
        are scaled by min(1, max_norm / (norm_k + 1e-6)). Returns the norms before clipping."""
        norms = self.grad_norms()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in self.parameters():
            if p.grad is not None:
                p.grad.mul_(coef.to(p.grad.dtype).view(-1, *([1] * (p.grad.dim() - 1))))
        return norms

    @torch.no_grad()
    def clip_grad_value_(self, clip_value: float) -> None:
        """Elementwise clipping, the same for a stack as for each member alone."""
        for p in self.parameters():
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)

    @torch.no_grad()
    def zero_member_grads(self, members: Sequence[int]) -> None:
        """Zero the gradients of `members` (a failed member must not move, nor NaN its Adam
        state further)."""
        if not members:
            return
        index = torch.tensor(list(members))
        for p in self.parameters():
            if p.grad is not None:
                p.grad[index.to(p.grad.device)] = 0

    @torch.no_grad()
    def copy_member_into(self, k: int, model: nn.Module) -> None:
        """Write member k's current weights into `model` (a module of the members' shape)."""
        own = dict(model.named_parameters())
        for n in self.names:
            own[n].copy_(self.weights[_escape(n)][k])


__all__ = ["STACK_ATTENTION", "StackedModel", "set_attention"]
