"""SQuAD questions to model features and model outputs back to answers, as the reference
recipe (transformers' run_qa) does it.

Pre-processing: question + context, only the context truncated, windows of `max_length`
tokens overlapping by `stride` tokens (`return_overflowing_tokens`), so a long context gives
several features per question. Each feature keeps the character offsets of its context tokens
(None elsewhere) and, for training, the token span of the first gold answer, or the CLS index
when the question has no answer or the answer is not wholly inside the window.

Post-processing: per feature the `n_best` top start and end logits form candidate spans
(start <= end, at most `max_answer_length` tokens, both in the context); the best-scoring span
over all the question's features is the answer, unless the null score (CLS start + end; the
smallest over the question's features, as run_qa takes it) beats it by more than the
threshold. The difference null − best span is returned as the question's null odds, which the
official evaluation's best-threshold search takes as ``na_probs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reinitlab.data.squad_io import QAExample
from reinitlab.errors import ReinitlabError

Offset = tuple[int, int] | None


@dataclass
class QAFeatures:
    """Parallel lists, one entry per feature (window). `offsets[i][t]` is token t's character
    span in its question's context, None for question, special and padding tokens."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    example_index: list[int]
    offsets: list[list[Offset]]
    cls_index: list[int]
    start_positions: list[int]
    end_positions: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def answer_token_span(
    offsets: Sequence[Offset], start_char: int, end_char: int
) -> tuple[int, int] | None:
    """The first and last context token of characters [start_char, end_char), or None when
    the window does not hold all of them (run_qa's rule: the last token starting at or before
    start_char, the first token ending at or after end_char)."""
    ctx = [t for t, o in enumerate(offsets) if o is not None]
    if not ctx:
        return None
    first, last = ctx[0], ctx[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return None
    start = first
    while start <= last and offsets[start] is not None and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end] is not None and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def prepare_features(
    tokenizer, examples: Sequence[QAExample], max_length: int = 384, stride: int = 128
) -> QAFeatures:
    """Tokenize questions with their contexts into overlapping windows (see the module doc)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ReinitlabError(
            f"SQuAD needs a fast tokenizer (offset mapping); {type(tokenizer).__name__} is not one"
        )
    if stride >= max_length:
        raise ReinitlabError(
            f"task.qa.doc_stride={stride} must be smaller than data.max_length={max_length}"
        )
    pad_on_right = tokenizer.padding_side == "right"
    context_id = 1 if pad_on_right else 0
    questions = [e.question.lstrip() for e in examples]
    contexts = [e.context for e in examples]
    enc = tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    out = QAFeatures([], [] if "token_type_ids" in enc else None, [], [], [], [], [])
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        ids = enc["input_ids"][i]
        seq = enc.sequence_ids(i)
        offsets = [
            tuple(o) if seq[t] == context_id else None
            for t, o in enumerate(enc["offset_mapping"][i])
        ]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        ex = examples[sample]
        span = None
        if ex.answers:
            start_char = ex.answer_starts[0]
            span = answer_token_span(offsets, start_char, start_char + len(ex.answers[0]))
        out.input_ids.append(list(ids))
        if out.token_type_ids is not None:
            out.token_type_ids.append(list(enc["token_type_ids"][i]))
        out.example_index.append(int(sample))
        out.offsets.append(offsets)
        out.cls_index.append(cls)
        out.start_positions.append(cls if span is None else span[0])
        out.end_positions.append(cls if span is None else span[1])
    return out


def postprocess_predictions(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best: int = 20,
    max_answer_length: int = 30,
    null_threshold: float = 0.0,
    with_negative: bool = True,
) -> tuple[dict[str, str], dict[str, float]]:
    """Each question's answer text ("" = no answer) and its null odds (null − best span score;
    +inf where no span qualifies). Logits are per feature (any length ≥ its tokens: padding
    positions have no offsets and are never chosen). Without `with_negative` (SQuAD 1.1) the
    best span is always taken."""
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise ReinitlabError(
            f"{len(start_logits)} start / {len(end_logits)} end logit rows for {len(features)} features"
        )
    per_example: dict[int, list[int]] = {}
    for f, ex in enumerate(features.example_index):
        per_example.setdefault(ex, []).append(f)
    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    for e, ex in enumerate(examples):
        null_score = None
        best_score, best_text = -np.inf, None
        for f in per_example.get(e, []):
            starts = np.asarray(start_logits[f], dtype=np.float64)
            ends = np.asarray(end_logits[f], dtype=np.float64)
            offsets = features.offsets[f]
            cls = features.cls_index[f]
            feature_null = float(starts[cls] + ends[cls])
            if null_score is None or feature_null < null_score:
                null_score = feature_null
            top_starts = np.argsort(starts, kind="stable")[::-1][:n_best]
            top_ends = np.argsort(ends, kind="stable")[::-1][:n_best]
            for s in top_starts:
                if s >= len(offsets) or offsets[s] is None:
                    continue
                for t in top_ends:
                    if t >= len(offsets) or offsets[t] is None:
                        continue
                    if t < s or t - s + 1 > max_answer_length:
                        continue
                    score = float(starts[s] + ends[t])
                    if score > best_score:
                        best_score = score
                        best_text = ex.context[offsets[s][0] : offsets[t][1]]
        if null_score is None:
            raise ReinitlabError(f"question {ex.id!r} has no features")
        odds = null_score - best_score if best_text is not None else np.inf
        null_odds[ex.id] = float(odds)
        if best_text is None or (with_negative and odds > null_threshold):
            predictions[ex.id] = ""
        else:
            predictions[ex.id] = best_text
    return predictions, null_odds
