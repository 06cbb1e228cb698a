"""GLUE metrics as torchmetrics, keyed by the names used in task configs and result records."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from reinitlab.tasks import TaskSpec


def _make(name: str, num_labels: int):
    if name == "mcc":
        return (
            BinaryMatthewsCorrCoef() if num_labels == 2 else MulticlassMatthewsCorrCoef(num_labels)
        )
    if name == "accuracy":
        # micro average = plain accuracy, as GLUE reports it
        return MulticlassAccuracy(num_classes=num_labels, average="micro")
    if name == "f1":
        return BinaryF1Score()  # GLUE F1 (MRPC, QQP): positive class = 1
    if name == "pearson":
        return PearsonCorrCoef()
    if name == "spearman":
        return SpearmanCorrCoef()
    raise KeyError(name)


def glue_metrics(task: TaskSpec) -> MetricCollection:
    return MetricCollection({m: _make(m, task.num_labels) for m in task.metrics})


def predictions(task: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """What the metrics consume: the score for regression, the argmax class otherwise."""
    if task.is_regression:
        return logits.squeeze(-1).float()
    return logits.argmax(dim=-1)
