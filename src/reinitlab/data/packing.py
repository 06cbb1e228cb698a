"""Compute a batch as packed rows: sequences laid end to end, each attending only to itself.

Dynamic padding makes a random batch as wide as its longest example, so on CoLA half of
every batch is padding. Packing keeps the batch exactly as the random sampler drew it and
removes nearly all of that padding:

- the sequences are placed end to end into rows as wide as the longest one (first-fit
  decreasing), so every linear layer runs on about as many positions as there are tokens;
- a block-diagonal attention mask lets each token attend only to its own sequence;
- position ids restart at every sequence (RoBERTa's and MPNet's start after the padding index);
  MPNet's relative position bias sees the same distances inside a sequence wherever it sits;
- a hook on the encoder gathers each sequence's first token ([CLS]) back into batch order,
  so the model's own classification head and loss run unchanged on one vector per example.

Every token sees exactly what it sees in the padded batch, so logits, loss and gradients are
the same to float rounding; only dropout draws different masks, as any reordering would.

It needs an encoder whose classification head reads only the first token (BERT, RoBERTa,
ELECTRA, DistilBERT, MPNet) and an attention implementation that honours a 4-D mask (transformers
>= 5 with `eager` or `sdpa`). `Packer.for_model` checks this by running one small batch both
ways, and says why when packing can't be used, so callers fall back to the padded batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

# model_type -> (attribute of the base model whose output is the last hidden state,
# whether position ids start after the padding index, as RoBERTa's do).
PACKABLE = {
    "bert": ("encoder", False),
    "electra": ("encoder", False),
    "roberta": ("encoder", True),
    "distilbert": ("transformer", False),
    # MPNet: positions as RoBERTa's; its relative position bias depends only on the distance
    # between two slots of a row, which packing keeps within each sequence
    "mpnet": ("encoder", True),
}
# Attention implementations that apply a 4-D mask as given (boolean for sdpa, additive for eager).
MASK_STYLE = {"sdpa": "bool", "eager": "additive"}
# Keys laid out along the sequence that packing knows how to move; anything else shaped like
# the attention mask would be left behind, so such a batch is refused.
SEQUENCE_KEYS = ("input_ids", "token_type_ids")


class PackingUnsupported(Exception):
    """The model can't be packed; the message says why (callers fall back, with a warning)."""


def pack_plan(lengths: Sequence[int], width: int | None = None) -> list[list[int]]:
    """Row indices packed into each row: longest first, each into the first row with room
    (first-fit decreasing). Rows are `width` wide (default: the longest length), so a batch
    of equal lengths stays one sequence per row. Every index appears exactly once."""
    lengths = [int(x) for x in lengths]
    if not lengths:
        return []
    width = max(lengths) if width is None else int(width)
    if max(lengths) > width:
        raise ValueError(f"width {width} is narrower than the longest sequence ({max(lengths)})")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r in range(len(rows)):
            if room[r] >= lengths[i]:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows


@dataclass
class PackedBatch:
    """Model inputs for the packed rows, and where each original row's first token went."""

    inputs: dict[str, torch.Tensor]
    first_token: tuple[torch.Tensor, torch.Tensor]  # (packed row, column) per original row

    @property
    def positions(self) -> int:
        """Positions the model computes (packed rows x width)."""
        ids = self.inputs["position_ids"]
        return ids.shape[0] * ids.shape[1]


def pack_batch(
    batch: dict[str, torch.Tensor],
    *,
    position_offset: int = 0,
    pad_position: int = 0,
    pad_id: int = 0,
    mask_style: str = "bool",
    dtype: torch.dtype = torch.float32,
    lengths: Sequence[int] | None = None,
) -> PackedBatch:
    """Pack a right-padded batch (see module docstring).

    `position_offset` is the position id of a sequence's first token (0 for BERT,
    padding index + 1 for RoBERTa); unused slots get `pad_position` and token `pad_id`. `mask_style`
    "bool" gives True where attention is allowed; "additive" gives 0 / dtype's minimum. An
    unused slot attends only to itself, so no mask row is empty (an all-masked row would give
    NaN in sdpa, and NaN times a zero attention weight still poisons the real tokens).

    Long because the checks, the slot layout and the scatter of every input share the layout's
    index lists and tensors; split, the pieces would pass half a dozen of them around."""
    mask = batch["attention_mask"]
    rows, width = mask.shape
    for key, value in batch.items():
        shaped_like_mask = isinstance(value, torch.Tensor) and value.shape[:2] == (rows, width)
        if shaped_like_mask and key not in (*SEQUENCE_KEYS, "attention_mask", "labels"):
            raise ValueError(f"can't pack batch key {key!r}: only {SEQUENCE_KEYS} are moved")
    if lengths is None:
        lengths = mask.sum(dim=1).tolist()
    lengths = [int(x) for x in lengths]
    if min(lengths, default=1) < 1:
        raise ValueError("packing needs at least one token per row (a row's mask is all 0)")
    counts = torch.tensor(lengths, device=mask.device)
    if not torch.equal(mask.bool(), torch.arange(width, device=mask.device) < counts[:, None]):
        raise ValueError("packing needs right-padded rows (attention mask 1...1 0...0)")
    plan = pack_plan(lengths)
    packed_width = max(lengths)
    device = mask.device

    src_row, src_col, dst_row, dst_col, positions = [], [], [], [], []
    first_row, first_col = [0] * rows, [0] * rows
    segment = torch.full((len(plan), packed_width), -1, dtype=torch.long)
    for r, members in enumerate(plan):
        col = 0
        for i in members:
            n = lengths[i]
            src_row += [i] * n
            src_col += range(n)
            dst_row += [r] * n
            dst_col += range(col, col + n)
            positions += range(position_offset, position_offset + n)
            first_row[i], first_col[i] = r, col
            segment[r, col : col + n] = i
            col += n
    as_index = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    src = (as_index(src_row), as_index(src_col))
    dst = (as_index(dst_row), as_index(dst_col))

    inputs: dict[str, torch.Tensor] = {}
    for key in SEQUENCE_KEYS:
        if key in batch:
            value = batch[key]
            packed = value.new_full((len(plan), packed_width), pad_id if key == "input_ids" else 0)
            packed[dst] = value[src]
            inputs[key] = packed
    position_ids = torch.full(
        (len(plan), packed_width), pad_position, dtype=torch.long, device=device
    )
    position_ids[dst] = as_index(positions)
    inputs["position_ids"] = position_ids

    segment = segment.to(device)
    same = segment[:, :, None] == segment[:, None, :]
    unused = segment < 0
    allowed = (same & ~unused[:, :, None]) | torch.diag_embed(unused)
    if mask_style == "bool":
        inputs["attention_mask"] = allowed[:, None]
    elif mask_style == "additive":
        additive = torch.zeros(allowed.shape, dtype=dtype, device=device)
        inputs["attention_mask"] = additive.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
    else:
        raise ValueError(f"mask_style must be 'bool' or 'additive', got {mask_style!r}")
    for key, value in batch.items():
        if key not in inputs and key != "attention_mask":
            inputs[key] = value  # labels and anything else with one entry per row
    return PackedBatch(inputs, (as_index(first_row), as_index(first_col)))


class _GatherFirstTokens:
    """Forward hook: replace the encoder's [rows, width, hidden] output by each sequence's
    first token, [batch, 1, hidden] in batch order; the head reads position 0 of that."""

    def __init__(self, first_token: tuple[torch.Tensor, torch.Tensor]):
        self.first_token = first_token

    def __call__(self, module, args, output):
        if isinstance(output, tuple):
            return (output[0][self.first_token].unsqueeze(1), *output[1:])
        output.last_hidden_state = output.last_hidden_state[self.first_token].unsqueeze(1)
        return output


class Packer:
    """Runs a sequence classifier on packed batches; build it with `Packer.for_model`."""

    def __init__(
        self,
        model: nn.Module,
        encoder: nn.Module,
        *,
        position_offset: int,
        pad_position: int,
        pad_id: int,
        mask_style: str,
    ):
        self.model = model
        self.encoder = encoder
        self.position_offset = position_offset
        self.pad_position = pad_position
        self.pad_id = pad_id
        self.mask_style = mask_style

    @classmethod
    def for_model(cls, model: nn.Module, check: bool = True) -> Packer:
        """A packer for `model`, or PackingUnsupported saying why not. With `check`, one small
        batch is run packed and padded (eval mode, no gradient, no RNG drawn) and the encoder
        outputs must agree, so an architecture or transformers version that ignores the 4-D
        mask or the position ids is caught here, not in the results."""
        config = model.config
        model_type = getattr(config, "model_type", None)
        if model_type not in PACKABLE:
            raise PackingUnsupported(
                f"model type {model_type!r} (packing knows {', '.join(PACKABLE)})"
            )
        implementation = getattr(config, "_attn_implementation", None) or "eager"
        if implementation not in MASK_STYLE:
            raise PackingUnsupported(
                f"attention implementation {implementation!r} (packing needs "
                f"{' or '.join(MASK_STYLE)}, which apply a 4-D attention mask as given)"
            )
        attr, after_padding = PACKABLE[model_type]
        encoder = getattr(model.base_model, attr, None)
        if not isinstance(encoder, nn.Module):
            raise PackingUnsupported(f"{type(model.base_model).__name__} has no .{attr}")
        pad = getattr(config, "pad_token_id", None) or 0
        # the embeddings' own padding index numbers the positions (MPNet fixes it at 1,
        # whatever pad_token_id says); RoBERTa's equals pad_token_id
        embeddings = getattr(model.base_model, "embeddings", None)
        position_pad = getattr(embeddings, "padding_idx", None)
        position_pad = pad if position_pad is None else int(position_pad)
        packer = cls(
            model,
            encoder,
            position_offset=position_pad + 1 if after_padding else 0,
            pad_position=position_pad if after_padding else 0,
            pad_id=pad,
            mask_style=MASK_STYLE[implementation],
        )
        if check:
            packer.check()
        return packer

    def pack(self, batch: dict[str, torch.Tensor], lengths=None) -> PackedBatch:
        """Pack a right-padded batch with this model's position, padding and mask conventions (mask
        values in the embeddings' dtype); `lengths` saves recounting the mask."""
        dtype = self.model.get_input_embeddings().weight.dtype
        return pack_batch(
            batch,
            position_offset=self.position_offset,
            pad_position=self.pad_position,
            pad_id=self.pad_id,
            mask_style=self.mask_style,
            dtype=dtype,
            lengths=lengths,
        )

    def __call__(self, batch: dict[str, torch.Tensor]):
        """The model's output (logits in batch order; loss when `labels` are given)."""
        return self._run(batch)

    def run_with(self, call, batch: dict[str, torch.Tensor]):
        """`call(**packed inputs)` with the first-token gather on this packer's encoder: how a
        stack (`reinitlab.stack`) runs its weightless template with each member's weights."""
        return self._run(batch, call=call)

    def _run(self, batch: dict[str, torch.Tensor], *after_gather, call=None):
        packed = self.pack(batch)
        hooks = [_GatherFirstTokens(packed.first_token), *after_gather]
        handles = [self.encoder.register_forward_hook(h) for h in hooks]
        try:
            return (call or self.model)(**packed.inputs)
        finally:
            for handle in handles:
                handle.remove()

    def check(self) -> None:
        """Packed and padded runs of a small batch must give the same first-token encoder
        outputs (see `for_model`): compared in fp32 (autocast off), to 1e-4 of how much those
        outputs differ between the sequences, so a mask or position ids that are not applied
        as given show up even in a tiny random model, whose outputs hardly depend on context."""
        model, config = self.model, self.model.config
        weight = model.get_input_embeddings().weight
        lengths = [6, 4, 2, 3]  # rows of 6: [6], [4, 2], [3] -> two sequences share a row
        g = torch.Generator().manual_seed(0)
        vocab = min(int(config.vocab_size), 1000)
        pad = self.pad_id
        ids = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        # never the pad id or the position padding index inside a sequence (RoBERTa and MPNet
        # number positions by skipping that id; a tokenizer never emits it there)
        avoid = torch.tensor(sorted({pad, self.pad_position}))
        for r, n in enumerate(lengths):
            row = torch.randint(0, vocab, (n,), generator=g)
            while bool(torch.isin(row, avoid).any()):
                row = torch.where(torch.isin(row, avoid), (row + 1) % vocab, row)
            ids[r, :n] = row
            mask[r, :n] = 1
        batch = {"input_ids": ids.to(weight.device), "attention_mask": mask.to(weight.device)}
        if int(getattr(config, "type_vocab_size", 0) or 0) > 1:
            types = torch.zeros_like(ids)
            types[:, 1::2] = 1
            batch["token_type_ids"] = (types * mask).to(weight.device)

        first_tokens: list[torch.Tensor] = []

        def record(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
            first_tokens.append(hidden[:, 0].float())

        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.no_grad(), torch.autocast(weight.device.type, enabled=False):
                handle = self.encoder.register_forward_hook(record)
                try:
                    model(**batch)
                finally:
                    handle.remove()
                self._run(batch, record)
        except Exception as err:  # an older transformers rejects 4-D masks, for instance
            raise PackingUnsupported(f"a packed forward failed: {err}") from err
        finally:
            for m, training in modes.items():
                m.training = training
        padded, packed = first_tokens
        spread = (padded - padded.mean(dim=0)).abs().max().item()
        diff = (packed - padded).abs().max().item()
        tolerance = 1e-4 if weight.dtype == torch.float32 else 3e-2
        if not diff <= tolerance * spread:
            raise PackingUnsupported(
                f"packed outputs differ from padded ones by {diff:.3g} on a test batch, "
                f"{diff / spread if spread else float('inf'):.2g} of their spread across "
                "sequences (the 4-D mask or the position ids are not applied as given)"
            )
