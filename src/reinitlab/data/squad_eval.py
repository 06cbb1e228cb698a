"""The official SQuAD 2.0 evaluation (``evaluate-v2.0.py``), as pure functions.

The hub's ``squad_v2`` metric is a script loaded from the hub, which this project cannot
reach offline, so the official rules are reimplemented here line for line: answer
normalisation, EM/F1 as the max over gold answers, the na-prob threshold, the HasAns/NoAns
breakdown and the best-threshold search (``find_all_best_thresh``). SQuAD 1.1 is the same
computation on answerable questions only.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, the articles a/an/the and extra whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """Token-overlap F1; an empty gold or prediction scores 1 only if both are empty."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return float(gold_toks == pred_toks)
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def gold_answers(texts: Sequence[str]) -> list[str]:
    """Gold answers that survive normalisation; an unanswerable question's gold is ``[""]``."""
    kept = [t for t in texts if normalize_answer(t)]
    return kept or [""]


def get_raw_scores(
    answers: Mapping[str, Sequence[str]], preds: Mapping[str, str]
) -> tuple[dict[str, int], dict[str, float]]:
    """EM and F1 per question, each the max over its gold answers.

    A question without a prediction is skipped, as the official script does (it prints
    "Missing prediction"); callers that need every question scored should check first.
    """
    exact: dict[str, int] = {}
    f1: dict[str, float] = {}
    for qid, texts in answers.items():
        if qid not in preds:
            continue
        golds = gold_answers(texts)
        pred = preds[qid]
        exact[qid] = max(compute_exact(a, pred) for a in golds)
        f1[qid] = max(compute_f1(a, pred) for a in golds)
    return exact, f1


def apply_no_ans_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_ans: Mapping[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    """Where na_prob > thresh the prediction counts as "no answer": 1 if the question has none."""
    out = {}
    for qid, s in scores.items():
        if na_probs[qid] > na_prob_thresh:
            out[qid] = float(not has_ans[qid])
        else:
            out[qid] = s
    return out


def make_eval_dict(
    exact: Mapping[str, float], f1: Mapping[str, float], qids: Sequence[str] | None = None
) -> dict[str, float]:
    if qids is None:
        total = len(exact)
        return {
            "exact": 100.0 * sum(exact.values()) / total,
            "f1": 100.0 * sum(f1.values()) / total,
            "total": total,
        }
    total = len(qids)
    return {
        "exact": 100.0 * sum(exact[k] for k in qids) / total,
        "f1": 100.0 * sum(f1[k] for k in qids) / total,
        "total": total,
    }


def find_best_thresh(
    preds: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_ans: Mapping[str, bool],
) -> tuple[float, float]:
    """The official search: start from "all no-answer", admit answers by increasing na_prob.

    Returns (best score in percent, the na_prob threshold reaching it).
    """
    num_no_ans = sum(1 for k in has_ans if not has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        elif preds[qid]:
            diff = -1
        else:
            diff = 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def squad_evaluate(
    answers: Mapping[str, Sequence[str]],
    preds: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
    search_preds: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """The official script's output dict for gold answer texts per question id.

    ``answers[qid]`` lists the gold texts (empty for an unanswerable question), ``preds[qid]``
    the predicted text ("" = no answer). With ``na_probs`` (e.g. null-score odds per question)
    the result also holds ``best_exact``/``best_f1`` and their thresholds, as
    ``evaluate-v2.0.py --na-prob-file`` gives. Without, every na_prob is 0 as there.

    ``search_preds`` (default: ``preds``) are the answers the best-threshold search admits.
    Given the best non-null span of every question, the search ranges over every threshold;
    given answers already thresholded (as the official script is usually fed), a question
    answered "" can never be admitted, so only lower thresholds are searched.
    """
    missing = [q for q in answers if q not in preds]
    if missing:
        raise ValueError(
            f"squad evaluation: no prediction for {len(missing)} question(s), e.g. {missing[:3]}"
        )
    has_ans = {qid: bool(gold_answers(texts)[0]) for qid, texts in answers.items()}
    given = na_probs
    probs = dict(na_probs) if na_probs is not None else {k: 0.0 for k in answers}
    exact_raw, f1_raw = get_raw_scores(answers, preds)
    exact_thr = apply_no_ans_threshold(exact_raw, probs, has_ans, na_prob_thresh)
    f1_thr = apply_no_ans_threshold(f1_raw, probs, has_ans, na_prob_thresh)
    out = make_eval_dict(exact_thr, f1_thr)
    has_ids = [k for k, v in has_ans.items() if v]
    no_ids = [k for k, v in has_ans.items() if not v]
    if has_ids:
        for key, value in make_eval_dict(exact_thr, f1_thr, has_ids).items():
            out[f"HasAns_{key}"] = value
    if no_ids:
        for key, value in make_eval_dict(exact_thr, f1_thr, no_ids).items():
            out[f"NoAns_{key}"] = value
    if given is not None:
        search = preds if search_preds is None else search_preds
        exact_s, f1_s = (exact_raw, f1_raw) if search is preds else get_raw_scores(answers, search)
        out["best_exact"], out["best_exact_thresh"] = find_best_thresh(
            search, exact_s, probs, has_ans
        )
        out["best_f1"], out["best_f1_thresh"] = find_best_thresh(search, f1_s, probs, has_ans)
    return out
