"""Small SQuAD files in the official JSON format, written by the tests that need them.

What they hold: answerable and unanswerable questions, questions with several gold answers,
and one long context (~60 sentences, far more than one 384-token window) asked about at many
places, so a question spans several features and some answers fall in the stride overlap.
"""

from __future__ import annotations

import json
from pathlib import Path

CITIES = [
    "Lisbon",
    "Oslo",
    "Nairobi",
    "Quito",
    "Hanoi",
    "Dublin",
    "Lima",
    "Seoul",
    "Accra",
    "Riga",
    "Tunis",
    "Sofia",
    "Bern",
    "Doha",
    "Minsk",
]


def long_context() -> tuple[str, list[tuple[str, str, int]]]:
    """The long paragraph and (question, answer, answer_start) for every third sentence."""
    parts, qas = [], []
    offset = 0
    for i in range(60):
        city = CITIES[i % len(CITIES)]
        sentence = (
            f"In chapter {i + 1} the travellers reached {city} after {i + 3} days of walking. "
        )
        if i % 3 == 0:
            start = offset + sentence.index(city)
            qas.append((f"Where did the travellers arrive in chapter {i + 1}?", city, start))
        parts.append(sentence)
        offset += len(sentence)
    return "".join(parts).rstrip(), qas


SHORT = (
    "Super Bowl 50 was an American football game. The Denver Broncos defeated the Carolina "
    "Panthers 24 to 10 to earn their third title. The game was played on February 7, 2016, "
    "at Levi's Stadium in Santa Clara, California."
)


def _answer(context: str, text: str, nth: int = 0) -> dict:
    start = -1
    for _ in range(nth + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def squad_doc(dev: bool) -> dict:
    """One document: a short article (several gold answers in dev, unanswerable questions) and
    the long article."""
    short_qas = [
        {
            "id": "short-winner",
            "question": "Which team won Super Bowl 50?",
            "answers": [_answer(SHORT, "Denver Broncos"), _answer(SHORT, "Broncos")]
            + ([_answer(SHORT, "The Denver Broncos")] if dev else []),
            "is_impossible": False,
        },
        {
            "id": "short-where",
            "question": "Where was the game played?",
            "answers": [_answer(SHORT, "Levi's Stadium in Santa Clara, California")]
            + ([_answer(SHORT, "Santa Clara, California")] if dev else []),
            "is_impossible": False,
        },
        {
            "id": "short-score",
            "question": "How many points did the Panthers score?",
            "answers": [_answer(SHORT, "10")],
            "is_impossible": False,
        },
        {
            "id": "short-none-1",
            "question": "Who sang the national anthem?",
            "answers": [],
            "plausible_answers": [_answer(SHORT, "Carolina Panthers")],
            "is_impossible": True,
        },
        {
            "id": "short-none-2",
            "question": "Which team lost Super Bowl 51?",
            "answers": [],
            "is_impossible": True,
        },
    ]
    context, long = long_context()
    long_qas = [
        {
            "id": f"long-{n}",
            "question": q,
            "answers": [{"text": a, "answer_start": s}],
            "is_impossible": False,
        }
        for n, (q, a, s) in enumerate(long)
    ]
    long_qas.append(
        {
            "id": "long-none",
            "question": "How many camels did they buy?",
            "answers": [],
            "is_impossible": True,
        }
    )
    return {
        "version": "v2.0",
        "data": [
            {"title": "Super_Bowl_50", "paragraphs": [{"context": SHORT, "qas": short_qas}]},
            {"title": "Travels", "paragraphs": [{"context": context, "qas": long_qas}]},
        ],
    }


def write_squad_dir(folder: Path, version: str = "2.0") -> Path:
    """Write the official-format train/dev files (v2.0, or v1.1 without unanswerables)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for dev, name in ((False, "train"), (True, "dev")):
        doc = squad_doc(dev)
        if version == "1.1":
            for article in doc["data"]:
                for para in article["paragraphs"]:
                    para["qas"] = [
                        {
                            k: v
                            for k, v in qa.items()
                            if k not in ("is_impossible", "plausible_answers")
                        }
                        for qa in para["qas"]
                        if not qa["is_impossible"]
                    ]
        tag = "v2.0" if version == "2.0" else "v1.1"
        (folder / f"{name}-{tag}.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder
