"""The official SQuAD 2.0 evaluation against hand-computed values."""

import pytest

from reinitlab.data.squad_eval import (
    compute_exact,
    compute_f1,
    find_best_thresh,
    normalize_answer,
    squad_evaluate,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The  Quick, Brown fox!", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("Theatre", "theatre"),  # articles only as whole words
        ("  Levi's\tStadium. ", "levis stadium"),
        ("A", ""),
        ("", ""),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_ignores_case_punctuation_and_articles():
    assert compute_exact("Paris", "paris.") == 1
    assert compute_exact("the Broncos", "Broncos") == 1
    assert compute_exact("Denver Broncos", "Broncos") == 0


def test_f1_hand_computed():
    # gold tokens cat sat on mat (4), pred cat on mat (3): P=1, R=3/4 -> 6/7
    assert compute_f1("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    # repeated tokens count with multiplicity: gold x y y, pred y y y -> P=R=2/3
    assert compute_f1("x y y", "y y y") == pytest.approx(2 / 3)
    assert compute_f1("Santa Clara, California", "Santa Clara") == pytest.approx(0.8)
    assert compute_f1("red", "blue") == 0.0


def test_f1_empty_answers():
    assert compute_f1("", "") == 1.0
    assert compute_f1("", "x") == 0.0
    assert compute_f1("x", "") == 0.0
    assert compute_f1("a", "") == 1.0  # "a" normalises to nothing


ANSWERS = {
    "q1": ["Denver Broncos", "Broncos"],
    "q2": ["Santa Clara, California"],
    "q3": ["1990"],
    "q4": [],
    "q5": [],
}
PREDS = {"q1": "Denver Broncos", "q2": "Santa Clara", "q3": "", "q4": "", "q5": "Levi's Stadium"}


def test_evaluate_without_na_probs():
    # per question EM 1,0,0,1,0 and F1 1,0.8,0,1,0
    out = squad_evaluate(ANSWERS, PREDS)
    assert out["exact"] == pytest.approx(40.0)
    assert out["f1"] == pytest.approx(56.0)
    assert out["total"] == 5
    assert out["HasAns_exact"] == pytest.approx(100 / 3)
    assert out["HasAns_f1"] == pytest.approx(60.0)
    assert out["HasAns_total"] == 3
    assert out["NoAns_exact"] == pytest.approx(50.0)
    assert out["NoAns_f1"] == pytest.approx(50.0)
    assert out["NoAns_total"] == 2
    assert "best_f1" not in out


def test_evaluate_with_na_probs_threshold_and_best_thresh():
    na = {"q1": -5.0, "q2": -1.0, "q3": 2.0, "q4": 3.0, "q5": 1.5}
    out = squad_evaluate(ANSWERS, PREDS, na_probs=na)
    # na_prob > 1.0 counts as "no answer": q3 stays 0, q4 stays 1, q5 becomes 1
    assert out["exact"] == pytest.approx(60.0)
    assert out["f1"] == pytest.approx(76.0)
    assert out["NoAns_exact"] == pytest.approx(100.0)
    assert out["HasAns_f1"] == pytest.approx(60.0)
    # best search from "all null" (2 correct), by increasing na_prob: q1 +1 (3, thresh -5),
    # q2 +0 / +0.8 (F1: 3.8, thresh -1), q5 -1, q3 +0, q4 +0
    assert out["best_exact"] == pytest.approx(60.0)
    assert out["best_exact_thresh"] == -5.0
    assert out["best_f1"] == pytest.approx(76.0)
    assert out["best_f1_thresh"] == -1.0


def test_best_thresh_all_null_is_best():
    # every answered question wrong: predicting null everywhere (threshold 0.0) wins
    answers = {"a": ["x"], "b": []}
    preds = {"a": "y", "b": "z"}
    score, thresh = find_best_thresh(
        preds, {"a": 0.0, "b": 0.0}, {"a": 0.3, "b": 0.1}, {"a": True, "b": False}
    )
    assert (score, thresh) == (50.0, 0.0)
    out = squad_evaluate(answers, preds, na_probs={"a": 0.3, "b": 0.1})
    assert out["best_f1"] == 50.0 and out["best_f1_thresh"] == 0.0


def test_squad_v1_has_no_noans_breakdown():
    out = squad_evaluate({"a": ["one two"], "b": ["three"]}, {"a": "one", "b": "three"})
    assert out["exact"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert "NoAns_total" not in out and out["HasAns_total"] == 2


def test_missing_prediction_is_an_error():
    with pytest.raises(ValueError, match="no prediction for 1 question"):
        squad_evaluate({"a": ["x"], "b": []}, {"a": "x"})


def test_best_thresh_over_separate_search_predictions():
    # thresholded answers: q1 was nulled (its odds 0.5 > 0), so the search cannot admit it
    answers = {"q1": ["x"], "q2": []}
    preds = {"q1": "", "q2": ""}
    na = {"q1": 0.5, "q2": 2.0}
    out = squad_evaluate(answers, preds, na_probs=na, na_prob_thresh=float("inf"))
    assert out["f1"] == 50.0 and out["best_f1"] == 50.0 and out["best_f1_thresh"] == 0.0
    # the best spans: admitting q1 (thresh 0.5) and not q2 gets both right
    spans = {"q1": "x", "q2": "y"}
    out = squad_evaluate(
        answers, preds, na_probs=na, na_prob_thresh=float("inf"), search_preds=spans
    )
    assert out["f1"] == 50.0  # the thresholded predictions' own score is unchanged
    assert (out["best_f1"], out["best_f1_thresh"]) == (100.0, 0.5)
    assert (out["best_exact"], out["best_exact_thresh"]) == (100.0, 0.5)
