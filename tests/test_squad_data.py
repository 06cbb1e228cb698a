"""SQuAD files in the official format: reading, and clear errors on bad input."""

import json

import pytest

from reinitlab.data.squad_io import (
    check_squad_source,
    load_squad_split,
    read_squad_json,
    resolve_squad_dir,
)
from reinitlab.errors import ReinitlabError
from tests.helpers.squad_fixture import SHORT, squad_doc, write_squad_dir


@pytest.fixture
def squad_dir(tmp_path):
    return write_squad_dir(tmp_path / "squad")


def test_reads_every_question_with_answers(squad_dir):
    dev = load_squad_split("2.0", "validation", squad_dir)
    by_id = {e.id: e for e in dev}
    assert len(dev) == 5 + 20 + 1
    winner = by_id["short-winner"]
    assert winner.answers == ("Denver Broncos", "Broncos", "The Denver Broncos")
    assert [
        SHORT[s : s + len(t)] for s, t in zip(winner.answer_starts, winner.answers, strict=True)
    ] == list(winner.answers)
    assert by_id["short-none-1"].is_impossible and by_id["short-none-1"].answers == ()
    assert sum(e.is_impossible for e in dev) == 3
    train = load_squad_split("2.0", "train", squad_dir)
    assert {e.id for e in train} == set(by_id)
    assert len({e.context for e in train}) == 2


def test_squad_dir_from_environment(squad_dir, monkeypatch):
    monkeypatch.setenv("SQUAD_DIR", str(squad_dir))
    assert resolve_squad_dir(None) == squad_dir
    check_squad_source("2.0", None)


def test_squad_v11_files(tmp_path):
    folder = write_squad_dir(tmp_path / "v1", version="1.1")
    dev = load_squad_split("1.1", "validation", folder)
    assert dev and not any(e.is_impossible for e in dev)


def test_missing_dir_and_file(tmp_path, squad_dir, monkeypatch):
    with pytest.raises(ReinitlabError, match=r"data.squad_dir='.*nowhere' is not a directory"):
        resolve_squad_dir(tmp_path / "nowhere")
    (squad_dir / "dev-v2.0.json").unlink()
    with pytest.raises(
        ReinitlabError, match=r"dev-v2.0.json not found \(files in .*train-v2.0.json"
    ):
        check_squad_source("2.0", squad_dir)
    with pytest.raises(ReinitlabError, match="train-v1.1.json not found"):
        check_squad_source("1.1", squad_dir)


def test_hub_refused_offline_with_the_reason(monkeypatch):
    monkeypatch.delenv("SQUAD_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReinitlabError, match=r"rajpurkar/squad_v2.*switched off.*SQUAD_DIR"):
        check_squad_source("2.0", None)


def _write(tmp_path, doc):
    path = tmp_path / "dev-v2.0.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_malformed_json_names_path_and_position(tmp_path):
    path = _write(tmp_path, '{"data": [\n  {"title": "x",,}]}')
    with pytest.raises(ReinitlabError, match=r"dev-v2.0.json is not valid JSON \(line 2, column"):
        read_squad_json(path)


def test_missing_element_is_named(tmp_path):
    doc = squad_doc(dev=True)
    del doc["data"][1]["paragraphs"][0]["qas"][2]["question"]
    with pytest.raises(
        ReinitlabError, match=r"data\[1\]\.paragraphs\[0\]\.qas\[2\] has no 'question'"
    ):
        read_squad_json(_write(tmp_path, doc))
    doc = squad_doc(dev=True)
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][1]["answer_start"] = "31"
    with pytest.raises(ReinitlabError, match=r"qas\[0\]\.answers\[1\]\.answer_start should be int"):
        read_squad_json(_write(tmp_path, doc))
    with pytest.raises(ReinitlabError, match="the document has no 'data'"):
        read_squad_json(_write(tmp_path, {"version": "v2.0"}))


def test_answer_not_matching_context(tmp_path):
    doc = squad_doc(dev=True)
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 1
    with pytest.raises(
        ReinitlabError,
        match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\] \(id 'short-winner'\): answer "
        r"text 'Denver Broncos' is not the context's characters at answer_start=\d+ "
        r"\(found 'enver Broncos '\)",
    ):
        read_squad_json(_write(tmp_path, doc))


def test_inconsistent_questions(tmp_path):
    doc = squad_doc(dev=True)
    doc["data"][0]["paragraphs"][0]["qas"][3]["answers"] = [{"text": "Broncos", "answer_start": 54}]
    with pytest.raises(ReinitlabError, match="'short-none-1'\\) is marked is_impossible but has 1"):
        read_squad_json(_write(tmp_path, doc))
    doc = squad_doc(dev=True)
    doc["data"][0]["paragraphs"][0]["qas"][1]["id"] = "short-winner"
    with pytest.raises(ReinitlabError, match="repeats question id 'short-winner'"):
        read_squad_json(_write(tmp_path, doc))
    doc = squad_doc(dev=True)
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"] = []
    with pytest.raises(ReinitlabError, match="has no answers and is not marked is_impossible"):
        read_squad_json(_write(tmp_path, doc))


def test_hub_rows_become_the_same_examples(squad_dir):
    """Rows in the hub's column layout (answers as {text: [...], answer_start: [...]})."""
    from reinitlab.data.squad_io import examples_from_hub_rows

    local = load_squad_split("2.0", "validation", squad_dir)
    rows = {
        "id": [e.id for e in local],
        "title": [e.title for e in local],
        "context": [e.context for e in local],
        "question": [e.question for e in local],
        "answers": [
            {"text": list(e.answers), "answer_start": list(e.answer_starts)} for e in local
        ],
    }
    assert examples_from_hub_rows(rows) == local
