"""Read SQuAD (1.1 and 2.0) questions from the official JSON files or the Hugging Face hub.

Both sources give the same `QAExample`s: id, context, question, every gold answer text with
its character start. Local files are checked as strictly as GLUE TSVs: a missing folder or
file, JSON that does not parse or lacks an element (named by its path in the document, e.g.
``data[0].paragraphs[2].qas[1].answers[0]``), and an answer whose text is not the context's
characters at ``answer_start`` are all errors, raised before any tokenization.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from reinitlab import hub
from reinitlab.errors import ReinitlabError
from reinitlab.paths import missing_file_error

SQUAD_FILES = {
    # version: (train file, dev file, hub dataset)
    "2.0": ("train-v2.0.json", "dev-v2.0.json", "rajpurkar/squad_v2"),
    "1.1": ("train-v1.1.json", "dev-v1.1.json", "rajpurkar/squad"),
}


@dataclass(frozen=True)
class QAExample:
    """One question. `answers` is empty for an unanswerable (SQuAD 2.0) question."""

    id: str
    title: str
    context: str
    question: str
    answers: tuple[str, ...] = field(default_factory=tuple)
    answer_starts: tuple[int, ...] = field(default_factory=tuple)

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def check_version(version: str) -> str:
    if version not in SQUAD_FILES:
        raise ReinitlabError(
            f"SQuAD version {version!r} is not known; allowed: {list(SQUAD_FILES)}"
        )
    return version


def split_file(version: str, split: str) -> str:
    """The official file name of `split` (``train`` or ``validation``)."""
    train, dev, _ = SQUAD_FILES[check_version(version)]
    if split == "train":
        return train
    if split == "validation":
        return dev
    raise ReinitlabError(f"SQuAD: no split {split!r}; splits: ['train', 'validation']")


def resolve_squad_dir(squad_dir: str | os.PathLike | None) -> Path | None:
    """`data.squad_dir`, else ``$SQUAD_DIR``, else None (the hub). A given folder must exist."""
    if squad_dir is None or str(squad_dir) == "":
        squad_dir = os.environ.get("SQUAD_DIR") or None
    if squad_dir is None:
        return None
    path = Path(os.path.expanduser(str(squad_dir)))
    if not path.is_dir():
        raise ReinitlabError(
            f"data.squad_dir={str(squad_dir)!r} is not a directory. Point data.squad_dir (or the "
            "SQUAD_DIR environment variable) at a folder holding the official train-v2.0.json "
            "and dev-v2.0.json (SQuAD 1.1: train-v1.1.json, dev-v1.1.json), or leave both unset "
            "to load rajpurkar/squad_v2 from the Hugging Face hub."
        )
    return path


def check_squad_source(version: str, squad_dir: str | os.PathLike | None) -> None:
    """Before anything loads: both files exist where the folder says, or the hub can answer."""
    root = resolve_squad_dir(squad_dir)
    if root is None:
        reason = hub.unreachable_reason()
        if reason is not None:
            raise ReinitlabError(
                f"SQuAD {version}: data.squad_dir is not set (nor $SQUAD_DIR), so the data would "
                f"come from the Hugging Face hub ({SQUAD_FILES[check_version(version)][2]}), but "
                f"the hub is {reason}. Set SQUAD_DIR=<folder of the official JSON files> or "
                "data.squad_dir=..."
            )
        return
    for split in ("train", "validation"):
        path = root / split_file(version, split)
        if not path.is_file():
            raise missing_file_error("SQuAD", path)


def _get(obj, key, kind, where: str, path: Path):
    if not isinstance(obj, dict) or key not in obj:
        raise ReinitlabError(f"SQuAD: {path}: {where} has no {key!r}; is this the official format?")
    value = obj[key]
    if not isinstance(value, kind):
        raise ReinitlabError(
            f"SQuAD: {path}: {where}.{key} should be {getattr(kind, '__name__', kind)}, "
            f"got {type(value).__name__}"
        )
    return value


def read_squad_json(path: Path, version: str = "2.0") -> list[QAExample]:
    """Every question of one official SQuAD JSON file, answers checked against the context.

    SQuAD 2.0 questions with ``is_impossible: true`` must have no answers (their
    ``plausible_answers`` are ignored, as the reference recipe does); under 1.1 every question
    needs one.
    """
    check_version(version)
    path = Path(path)
    if not path.is_file():
        raise missing_file_error("SQuAD", path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise ReinitlabError(
            f"SQuAD: {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ReinitlabError(f"SQuAD: cannot read {path} as UTF-8 JSON: {e}") from e
    examples: list[QAExample] = []
    seen: dict[str, str] = {}
    for a, article in enumerate(_get(doc, "data", list, "the document", path)):
        where_a = f"data[{a}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, para in enumerate(_get(article, "paragraphs", list, where_a, path)):
            where_p = f"{where_a}.paragraphs[{p}]"
            context = _get(para, "context", str, where_p, path)
            for q, qa in enumerate(_get(para, "qas", list, where_p, path)):
                where_q = f"{where_p}.qas[{q}]"
                qid = _get(qa, "id", str, where_q, path)
                question = _get(qa, "question", str, where_q, path)
                answers = _get(qa, "answers", list, where_q, path)
                impossible = qa.get("is_impossible", False)
                if qid in seen:
                    raise ReinitlabError(
                        f"SQuAD: {path}: {where_q} repeats question id {qid!r} (first at {seen[qid]})"
                    )
                seen[qid] = where_q
                if impossible and answers and version == "2.0":
                    raise ReinitlabError(
                        f"SQuAD: {path}: {where_q} (id {qid!r}) is marked is_impossible but has "
                        f"{len(answers)} answer(s)"
                    )
                if not answers and not impossible:
                    raise ReinitlabError(
                        f"SQuAD: {path}: {where_q} (id {qid!r}) has no answers and is not marked "
                        "is_impossible"
                    )
                texts, starts = [], []
                for n, ans in enumerate(answers):
                    where = f"{where_q}.answers[{n}]"
                    text = _get(ans, "text", str, where, path)
                    start = _get(ans, "answer_start", int, where, path)
                    found = context[start : start + len(text)] if start >= 0 else None
                    if found != text:
                        raise ReinitlabError(
                            f"SQuAD: {path}: {where} (id {qid!r}): answer text {text!r} is not "
                            f"the context's characters at answer_start={start} (found {found!r})"
                        )
                    texts.append(text)
                    starts.append(start)
                examples.append(
                    QAExample(qid, str(title), context, question, tuple(texts), tuple(starts))
                )
    if not examples:
        raise ReinitlabError(f"SQuAD: {path} holds no questions")
    return examples


def examples_from_hub_rows(rows) -> list[QAExample]:
    """Columns of the hub's squad / squad_v2 (answers as {text: [...], answer_start: [...]})."""
    return [
        QAExample(
            id=str(rows["id"][i]),
            title=str(rows["title"][i]),
            context=rows["context"][i],
            question=rows["question"][i],
            answers=tuple(rows["answers"][i]["text"]),
            answer_starts=tuple(int(s) for s in rows["answers"][i]["answer_start"]),
        )
        for i in range(len(rows["id"]))
    ]


def load_squad_split(
    version: str, split: str, squad_dir: str | os.PathLike | None
) -> list[QAExample]:
    """`split` (``train`` / ``validation``) from the local folder, or the hub when none is set."""
    root = resolve_squad_dir(squad_dir)
    if root is not None:
        return read_squad_json(root / split_file(version, split), version)
    hub_path = SQUAD_FILES[check_version(version)][2]
    try:
        import datasets

        ds = datasets.load_dataset(hub_path, split=split)
    except Exception as e:  # offline, hub down, auth...: all mean "use local files"
        raise ReinitlabError(
            f"SQuAD {version}: could not load {hub_path} split {split!r} from the Hugging Face "
            f"hub ({type(e).__name__}: {e}). Without network access, set data.squad_dir=<folder "
            "of the official JSON files> or the SQUAD_DIR environment variable."
        ) from e
    return examples_from_hub_rows(ds[:])
