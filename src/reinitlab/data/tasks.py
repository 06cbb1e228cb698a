"""The task table: one `TaskSpec` per task, read from `conf/task/<name>.yaml`.

GLUE tasks are sequence classification or regression (`kind: classification`); SQuAD
(`kind: qa`) is extractive question answering, with its settings under `qa:`.

The YAML files are the single source of truth (Hydra composes them as the `task` group);
this module turns one into a typed, validated object that the data and metric code use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reinitlab.errors import ReinitlabError
from reinitlab.paths import config_dir

KNOWN_METRICS = ("mcc", "accuracy", "f1", "pearson", "spearman", "exact")
KINDS = ("classification", "qa")


@dataclass(frozen=True)
class QASettings:
    """Extractive QA (SQuAD): the official file version and the reference recipe's windows
    and answer selection (transformers' run_qa defaults)."""

    version: str = "2.0"  # 2.0: unanswerable questions; 1.1: every question has an answer
    doc_stride: int = 128  # tokens shared by consecutive windows of a long context
    n_best: int = 20  # start/end candidates per feature
    max_answer_length: int = 30  # tokens
    null_threshold: float = 0.0  # no answer when null score - best span score exceeds it

    @property
    def with_negative(self) -> bool:
        return self.version == "2.0"


@dataclass(frozen=True)
class SourceFields:
    """Which columns hold the text(s) and the label in one source (local TSV or the hub)."""

    text_fields: tuple[str, ...]
    label_field: str
    header: bool = True
    columns: tuple[str, ...] | None = None  # for header-less TSVs (CoLA)
    skip_malformed: bool = False  # drop rows with missing fields instead of failing (QQP)


@dataclass(frozen=True)
class ValidationSplit:
    """A dev set: its name (used in metric keys), TSV file name and hub split name."""

    name: str
    tsv: str
    hub: str


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task as its `conf/task/<name>.yaml` describes it: labels, metrics, where its
    splits are (TSV or hub) and which columns hold the text and label."""

    name: str
    glue_dir_name: str
    labels: tuple[str, ...] | None  # None: regression (STS-B)
    metrics: tuple[str, ...]
    primary_metric: str
    tsv: SourceFields
    hub: SourceFields
    train_tsv: str = "train.tsv"
    train_hub: str = "train"
    validation: tuple[ValidationSplit, ...] = field(default_factory=tuple)
    hub_path: str = "nyu-mll/glue"
    hub_name: str = ""
    # Regression only: the closed interval every label must lie in (STS-B: [0, 5]); None
    # allows any finite number. Labels are checked against it when read (glue_io).
    label_range: tuple[float, float] | None = None
    kind: str = "classification"
    qa: QASettings | None = None  # kind qa only

    @property
    def is_qa(self) -> bool:
        """Extractive question answering (SQuAD): start/end logits per token, no labels."""
        return self.kind == "qa"

    @property
    def is_regression(self) -> bool:
        """STS-B-like: a float label (`labels` null)."""
        return self.labels is None and not self.is_qa

    @property
    def num_labels(self) -> int:
        """Classes, 1 for regression, 2 for QA (start and end logit: the head's outputs)."""
        if self.is_qa:
            return 2
        return 1 if self.labels is None else len(self.labels)

    def metric_prefix(self, split_index: int) -> str:
        """`val` for the first (primary) dev set, `val_<name>` for others (MNLI mismatched)."""
        return "val" if split_index == 0 else f"val_{self.validation[split_index].name}"

    @classmethod
    def from_config(cls, cfg: DictConfig | dict[str, Any]) -> TaskSpec:
        """A validated spec from a task config (metrics known, primary among them, label_range only
        for regression and finite)."""
        c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        name = c.get("name", "?")
        metrics = tuple(c["metrics"])
        unknown = [m for m in metrics if m not in KNOWN_METRICS]
        if unknown:
            raise ReinitlabError(
                f"task {name}: unknown metric(s) {unknown}; allowed: {list(KNOWN_METRICS)}"
            )
        if c["primary_metric"] not in metrics:
            raise ReinitlabError(
                f"task {name}: primary_metric {c['primary_metric']!r} is not one of {metrics}"
            )
        kind = c.get("kind", "classification")
        if kind not in KINDS:
            raise ReinitlabError(f"task {name}: kind {kind!r} is not one of {list(KINDS)}")
        if kind == "qa":
            return cls._qa_from_config(c, metrics)
        hub = c["hub"]
        tsv = c["tsv"]
        splits = c["splits"]
        labels = c.get("labels")
        label_range = c.get("label_range")
        if label_range is not None:
            if labels is not None:
                raise ReinitlabError(
                    f"task {name}: label_range is for regression tasks (labels: null), "
                    f"but labels are {labels}"
                )
            try:
                low, high = (float(x) for x in label_range)
            except (TypeError, ValueError):
                low = high = math.nan
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ReinitlabError(
                    f"task {name}: label_range must be [low, high] with finite low <= high, "
                    f"got {label_range!r}"
                )
            label_range = (low, high)
        return cls(
            name=name,
            glue_dir_name=c["glue_dir_name"],
            labels=None if labels is None else tuple(str(x) for x in labels),
            metrics=metrics,
            primary_metric=c["primary_metric"],
            tsv=SourceFields(
                text_fields=tuple(tsv["text_fields"]),
                label_field=tsv["label_field"],
                header=tsv.get("header", True),
                columns=tuple(tsv["columns"]) if tsv.get("columns") else None,
                skip_malformed=tsv.get("skip_malformed", False),
            ),
            hub=SourceFields(text_fields=tuple(hub["text_fields"]), label_field=hub["label_field"]),
            train_tsv=splits["train"]["tsv"],
            train_hub=splits["train"]["hub"],
            validation=tuple(ValidationSplit(**v) for v in splits["validation"]),
            hub_path=hub["path"],
            hub_name=hub["name"],
            label_range=label_range,
        )

    @classmethod
    def _qa_from_config(cls, c: dict[str, Any], metrics: tuple[str, ...]) -> TaskSpec:
        """A SQuAD task: the official JSON files (`squad_io`) or the hub dataset `hub.path`."""
        name = c["name"]
        fields = dict(c.get("qa") or {})
        unknown = sorted(set(fields) - set(QASettings.__dataclass_fields__))
        if unknown:
            raise ReinitlabError(
                f"task.qa.{unknown[0]} is not a QA option; known: "
                f"{', '.join(QASettings.__dataclass_fields__)}"
            )
        qa = QASettings(**fields)
        if qa.version not in ("2.0", "1.1"):
            raise ReinitlabError(f"task {name}: qa.version {qa.version!r}; allowed: 2.0, 1.1")
        for option, low in (("doc_stride", 1), ("n_best", 1), ("max_answer_length", 1)):
            value = getattr(qa, option)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ReinitlabError(f"task.qa.{option}={value!r}: allowed: an integer >= {low}")
        from reinitlab.data.squad_io import SQUAD_FILES

        train_file, dev_file, hub_path = SQUAD_FILES[qa.version]
        qa_fields = SourceFields(text_fields=("question", "context"), label_field="answers")
        return cls(
            name=name,
            glue_dir_name="",
            labels=None,
            metrics=metrics,
            primary_metric=c["primary_metric"],
            tsv=qa_fields,
            hub=qa_fields,
            train_tsv=train_file,
            validation=(ValidationSplit("validation", dev_file, "validation"),),
            hub_path=hub_path,
            kind="qa",
            qa=qa,
        )


def available_tasks() -> list[str]:
    """Names of the tasks in `conf/task/`, sorted."""
    return sorted(p.stem for p in (config_dir() / "task").glob("*.yaml"))


def load_task(name: str) -> TaskSpec:
    """The spec of a task by name, without Hydra (for notebooks and tests)."""
    path = config_dir() / "task" / f"{name}.yaml"
    if not path.is_file():
        raise ReinitlabError(f"unknown task {name!r}; available tasks: {available_tasks()}")
    return TaskSpec.from_config(OmegaConf.load(path))
