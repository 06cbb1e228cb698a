"""Compute a training batch in length-sorted pieces, each padded only to its own longest example.

`optim.remove_padding=split`, and the fallback for models that `reinitlab.data.packing` (the
default, faster: no per-piece overhead, less padding) can't verify.

Dynamic padding makes a random batch as wide as its longest example, so on CoLA half of
every batch is padding. Sorting *batches* by length (`reinitlab.data.batching`) removes it but
changes which examples share a batch, and that changed 1-epoch dev metrics. Splitting keeps
the batch exactly as the random sampler drew it: the rows are sorted by length, cut into
contiguous pieces, each piece is trimmed to its own width, and the batch loss is the
size-weighted mean of the piece losses. That is the same loss and, by linearity, the same
gradient (to float rounding: the sums run in a different order), so one optimizer step sees
exactly what it would see unsplit; only dropout draws different masks, as any reordering would.

Where to cut is a small dynamic programme over the sorted lengths: a piece costs its padded
token count plus a fixed `overhead_tokens` (each extra forward/backward has per-call costs,
and small matrices run below peak), and the cheapest partition wins. One piece (no split) is
always a candidate, so a batch of equal lengths stays whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Measured on CPU with MiniLM-L6 (bench/bench_speed.py): a piece's fixed cost is worth about
# this many padded tokens; larger values split less often.
DEFAULT_OVERHEAD_TOKENS = 128


def split_plan(
    lengths: Sequence[int], overhead_tokens: float = DEFAULT_OVERHEAD_TOKENS
) -> list[list[int]]:
    """Row indices of each piece: rows sorted longest first (stable), cut where it minimises
    sum(piece rows x piece max length) + overhead_tokens x pieces. Every row appears once."""
    if overhead_tokens < 0:
        raise ValueError(f"overhead_tokens must be >= 0, got {overhead_tokens}")
    lengths = [int(x) for x in lengths]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    if n == 0:
        return []
    # best[j]: cheapest cost of the first j sorted rows; a piece [i, j) is as wide as row i.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + (j - i) * lengths[order[i]] + overhead_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    pieces: list[list[int]] = []
    j = n
    while j > 0:
        pieces.append(order[cut[j] : j])
        j = cut[j]
    return pieces[::-1]


def split_batch(
    batch: dict[str, torch.Tensor],
    pieces: list[list[int]],
    lengths: Sequence[int] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The batch's rows for each piece, sequence tensors trimmed to the piece's longest row.

    Sequence tensors are those shaped like `attention_mask` (rows x width); anything else
    with one entry per row (labels) is only indexed by row. `lengths` (rows' token counts)
    saves recounting the mask when the caller has them."""
    mask = batch["attention_mask"]
    rows, width = mask.shape
    if lengths is None:
        lengths = mask.sum(dim=1).tolist()
    out = []
    for piece in pieces:
        idx = torch.as_tensor(piece, dtype=torch.long, device=mask.device)
        piece_width = max(int(lengths[i]) for i in piece)
        part = {}
        for key, value in batch.items():
            if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != rows:
                part[key] = value
            elif value.dim() >= 2 and value.shape[1] == width and key != "labels":
                part[key] = value[idx, :piece_width]
            else:
                part[key] = value[idx]
        out.append(part)
    return out


def split_loss(
    model, batch: dict[str, torch.Tensor], overhead_tokens: float = DEFAULT_OVERHEAD_TOKENS
) -> torch.Tensor:
    """The model's mean loss over `batch`, computed piece by piece (see module docstring).

    Assumes the model's loss is a mean over rows (HF sequence classifiers: cross-entropy or
    MSE with mean reduction), so the batch mean is the size-weighted mean of piece means."""
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    pieces = split_plan(lengths, overhead_tokens)
    if len(pieces) == 1:
        return model(**batch).loss
    rows = len(lengths)
    embeddings = model.get_input_embeddings() if "input_ids" in batch else None
    if embeddings is not None:
        # Look the word embeddings up once for the whole batch: per piece, the embedding's
        # backward would zero-fill and add a dense vocab x hidden gradient each time (on CPU
        # ~40 ms per extra piece with MiniLM). Position and token-type embeddings are still
        # added inside the model, per piece.
        batch = dict(batch)
        batch["inputs_embeds"] = embeddings(batch.pop("input_ids"))
    total = None
    for piece, part in zip(pieces, split_batch(batch, pieces, lengths), strict=True):
        loss = model(**part).loss * (len(piece) / rows)
        total = loss if total is None else total + loss
    return total
