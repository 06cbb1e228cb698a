"""SQuAD pre-processing (windows, offsets, answer spans) and post-processing (n-best, null)."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from reinitlab.data.squad_features import (
    answer_token_span,
    postprocess_predictions,
    prepare_features,
)
from reinitlab.data.squad_io import QAExample, load_squad_split
from reinitlab.errors import ReinitlabError
from reinitlab.paths import config_dir
from reinitlab.training.models import load_tokenizer
from tests.helpers.squad_fixture import write_squad_dir


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(OmegaConf.load(config_dir() / "model" / "tiny.yaml"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return load_squad_split("2.0", "validation", write_squad_dir(tmp_path_factory.mktemp("sq")))


@pytest.mark.parametrize(("max_length", "stride"), [(384, 128), (64, 24)])
def test_every_gold_answer_round_trips(tokenizer, dev, max_length, stride):
    feats = prepare_features(tokenizer, dev, max_length=max_length, stride=stride)
    assert all(len(ids) <= max_length for ids in feats.input_ids)
    in_windows = {}  # (question, answer number) -> features holding it
    for f, e in enumerate(feats.example_index):
        ex = dev[e]
        for n, (text, start) in enumerate(zip(ex.answers, ex.answer_starts, strict=True)):
            span = answer_token_span(feats.offsets[f], start, start + len(text))
            if span is None:
                continue
            s, t = span
            assert ex.context[feats.offsets[f][s][0] : feats.offsets[f][t][1]] == text
            in_windows.setdefault((e, n), []).append(f)
    gold = {(e, n) for e, ex in enumerate(dev) for n in range(len(ex.answers))}
    assert set(in_windows) == gold  # every answer is wholly inside at least one window
    overlap = [k for k, fs in in_windows.items() if len(fs) > 1]
    assert overlap, "no answer fell in a stride overlap"
    long_feats = [f for f, e in enumerate(feats.example_index) if dev[e].id == "long-0"]
    assert len(long_feats) >= 3  # the long context spans several windows


def test_training_labels_point_at_the_first_answer_or_cls(tokenizer, dev):
    feats = prepare_features(tokenizer, dev, max_length=384, stride=128)
    seen_cls_for_answerable = False
    for f, e in enumerate(feats.example_index):
        ex = dev[e]
        s, t = feats.start_positions[f], feats.end_positions[f]
        cls = feats.cls_index[f]
        assert cls == 0 and feats.input_ids[f][0] == tokenizer.cls_token_id
        if ex.is_impossible:
            assert (s, t) == (cls, cls)
        elif (s, t) == (cls, cls):
            seen_cls_for_answerable = True  # the answer lies outside this window
            start = ex.answer_starts[0]
            assert answer_token_span(feats.offsets[f], start, start + len(ex.answers[0])) is None
        else:
            assert ex.context[feats.offsets[f][s][0] : feats.offsets[f][t][1]] == ex.answers[0]
    assert seen_cls_for_answerable


def test_offsets_only_on_context_tokens(tokenizer, dev):
    feats = prepare_features(tokenizer, dev[:1], max_length=384, stride=128)
    offsets = feats.offsets[0]
    sep = tokenizer.sep_token_id
    first_sep = feats.input_ids[0].index(sep)
    assert all(o is None for o in offsets[: first_sep + 1])  # CLS, question, SEP
    assert offsets[-1] is None and all(o is not None for o in offsets[first_sep + 1 : -1])
    assert feats.token_type_ids[0][first_sep + 1] == 1


def test_bad_settings(tokenizer, dev):
    with pytest.raises(
        ReinitlabError, match="doc_stride=128 must be smaller than data.max_length=100"
    ):
        prepare_features(tokenizer, dev, max_length=100, stride=128)


# Post-processing on a hand-made feature: context "aa bb cc dd", offsets of tokens 1..4
CTX = "aa bb cc dd"
EX = QAExample("q", "", CTX, "?", ("bb cc",), (3,))


def _features(n_windows=1):
    from reinitlab.data.squad_features import QAFeatures

    offs = [None, (0, 2), (3, 5), (6, 8), (9, 11), None]
    return QAFeatures(
        input_ids=[[0] * 6] * n_windows,
        token_type_ids=None,
        example_index=[0] * n_windows,
        offsets=[offs] * n_windows,
        cls_index=[0] * n_windows,
        start_positions=[0] * n_windows,
        end_positions=[0] * n_windows,
    )


def _logits(values):
    return [np.array(values, dtype=np.float32)]


def test_picks_the_best_valid_span():
    # best start 3 but best end 1 (< start): invalid; best valid pair is (2, 3): "bb cc"
    start = _logits([0.0, 1.0, 4.0, 5.0, 0.0, 9.0])  # token 5 (SEP) is never chosen
    end = _logits([0.0, 6.0, 0.0, 3.0, 1.0, 9.0])
    preds, odds = postprocess_predictions([EX], _features(), start, end)
    # candidates: (2,3)=7, (3,3)=8, (3,4)=6, (1,1)=7, ... best (3,3) = "cc" at 8
    assert preds == {"q": "cc"}
    assert odds["q"] == pytest.approx(0.0 - 8.0)


def test_max_answer_length_and_n_best():
    start = _logits([0.0, 5.0, 2.0, 0.0, 0.0, 0.0])
    end = _logits([0.0, 0.0, 0.0, 1.0, 5.0, 0.0])
    preds, _ = postprocess_predictions([EX], _features(), start, end)
    assert preds["q"] == "aa bb cc dd"
    preds, _ = postprocess_predictions([EX], _features(), start, end, max_answer_length=3)
    # (1,4)=10 is 4 tokens; of <= 3 tokens: (2,4)=7 beats (1,3)=6 and (1,1)=5
    assert preds["q"] == "bb cc dd"
    preds, _ = postprocess_predictions([EX], _features(), start, end, n_best=1, max_answer_length=3)
    assert preds["q"] == ""  # only (1, 4) among the top-1 pairs, and it is too long


def test_null_answer_against_threshold():
    start = _logits([3.0, 1.0, 2.0, 0.0, 0.0, 0.0])
    end = _logits([3.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    # null 6, best span (2,3) = 4: odds 2 > 0 -> no answer
    preds, odds = postprocess_predictions([EX], _features(), start, end)
    assert preds == {"q": ""} and odds["q"] == pytest.approx(2.0)
    preds, _ = postprocess_predictions([EX], _features(), start, end, null_threshold=2.5)
    assert preds == {"q": "bb cc"}
    preds, _ = postprocess_predictions([EX], _features(), start, end, with_negative=False)
    assert preds == {"q": "bb cc"}


def test_best_span_across_features_and_smallest_null():
    feats = _features(n_windows=2)
    start = [np.array([9.0, 0, 0, 1, 0, 0]), np.array([1.0, 0, 0, 0, 3, 0])]
    end = [np.array([9.0, 0, 0, 1, 0, 0]), np.array([1.0, 0, 0, 0, 3, 0])]
    # window 1: null 18, best span (3,3)=2; window 2: null 2, best (4,4)=6.
    # null = min(18, 2) = 2; best span over both = 6 ("dd") -> odds -4, answer "dd"
    preds, odds = postprocess_predictions([EX], feats, start, end)
    assert preds == {"q": "dd"} and odds["q"] == pytest.approx(-4.0)
