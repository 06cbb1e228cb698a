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

from reinitlab.data.tasks import TaskSpec


def matthews_from_confmat(confmat: torch.Tensor) -> torch.Tensor:
    """Matthews correlation as GLUE computes it (sklearn's formula): 0 when it is undefined.

    torchmetrics replaces the undefined 0/0 -- a model that predicts one class for every
    example, common after re-initializing many layers -- by a limit far from 0 (0.28 for a
    constant prediction on a 70/30 dev set), which would report a collapsed CoLA model as
    having learned something.
    """
    c = confmat.double()
    total, correct = c.sum(), c.trace()
    true_counts, pred_counts = c.sum(dim=1), c.sum(dim=0)
    cov_tp = correct * total - (true_counts * pred_counts).sum()
    cov_pp = total**2 - (pred_counts**2).sum()
    cov_tt = total**2 - (true_counts**2).sum()
    denom = cov_pp * cov_tt
    if denom == 0:
        return torch.zeros((), dtype=torch.float32)
    return (cov_tp / denom.sqrt()).float()


class GlueBinaryMatthews(BinaryMatthewsCorrCoef):
    """Binary MCC that is 0 where it is undefined, as GLUE reports it (`matthews_from_confmat`)."""

    def compute(self) -> torch.Tensor:
        """MCC from the accumulated confusion matrix, 0 when undefined."""
        return matthews_from_confmat(self.confmat)


class GlueMulticlassMatthews(MulticlassMatthewsCorrCoef):
    """Multiclass MCC that is 0 where it is undefined, as GLUE reports it."""

    def compute(self) -> torch.Tensor:
        """MCC from the accumulated confusion matrix, 0 when undefined."""
        return matthews_from_confmat(self.confmat)


def _make(name: str, num_labels: int):
    if name == "mcc":
        return GlueBinaryMatthews() if num_labels == 2 else GlueMulticlassMatthews(num_labels)
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
    """A fresh collection of the task's GLUE metrics, keyed by the names task configs use."""
    return MetricCollection({m: _make(m, task.num_labels) for m in task.metrics})


def predictions(task: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """What the metrics consume: the score for regression, the argmax class otherwise."""
    if task.is_regression:
        return logits.squeeze(-1).float()
    return logits.argmax(dim=-1)
