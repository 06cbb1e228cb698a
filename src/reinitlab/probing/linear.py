"""Linear probes on frozen per-layer features, scored with the task's GLUE metric.

Budget (fixed, the same for every layer, task and model state):
- features are standardised with the training subset's mean and std;
- classification: scikit-learn `LogisticRegression` (lbfgs, multinomial, max_iter=1000),
  inverse regularisation C from `C_GRID`; regression (STS-B): `Ridge` with alpha from
  `ALPHA_GRID`;
- the regulariser is chosen on a held-out part of the training subset (`HELDOUT_FRACTION`,
  stratified for classification, drawn with the given seed) by the task's primary metric;
  ties go to the stronger regularisation; the probe is then refit on the whole training
  subset with that value and scored once on dev.
Scores come from the project's torchmetrics (`reinitlab.training.metrics`), so a probe's MCC is the
same number fine-tuning would report for the same predictions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reinitlab.data.tasks import TaskSpec
from reinitlab.errors import ReinitlabError
from reinitlab.training.metrics import glue_metrics, predictions

C_GRID = (0.01, 0.1, 1.0, 10.0)
ALPHA_GRID = (1.0, 10.0, 100.0, 1000.0)
HELDOUT_FRACTION = 0.2
MAX_ITER = 1000


def score(task: TaskSpec, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics for probe outputs (class scores [N, K] or regression [N])."""
    logits = torch.as_tensor(np.asarray(outputs, dtype=np.float32))
    if task.is_regression:
        logits = logits.reshape(-1, 1)
        target = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    else:
        target = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all targets and predictions.*")
        metrics = glue_metrics(task)
        metrics.update(predictions(task, logits), target)
        return {k: float(v) for k, v in metrics.compute().items()}


def _primary(task: TaskSpec, outputs, labels) -> float:
    value = score(task, outputs, labels)[task.primary_metric]
    return value if math.isfinite(value) else -math.inf


def _estimator(task: TaskSpec, reg: float, seed: int):
    from sklearn.linear_model import LogisticRegression, Ridge

    if task.is_regression:
        return Ridge(alpha=reg)
    return LogisticRegression(C=reg, max_iter=MAX_ITER, random_state=seed)


def _outputs(task: TaskSpec, est, x: np.ndarray) -> np.ndarray:
    """Class scores [N, num_labels] in label order (a class absent from training scores -inf)."""
    if task.is_regression:
        return est.predict(x)
    proba = est.predict_proba(x)
    full = np.full((len(x), task.num_labels), -np.inf)
    full[:, est.classes_.astype(int)] = proba
    return full


@dataclass
class ProbeResult:
    """One layer's probe: its dev metrics and the regulariser picked on held-out training data."""

    metrics: dict[str, float]  # the task's GLUE metrics on dev
    primary: float
    regularisation: float  # the chosen C (classification) or alpha (regression)
    heldout_primary: float


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std <= 1e-6 * np.maximum(1.0, np.abs(mean))] = 1.0  # constant feature: leave at 0
    return [(a - mean) / std for a in (train, *others)]


def fit_probe(
    task: TaskSpec,
    train_x,
    train_y,
    dev_x,
    dev_y,
    seed: int = 0,
    grid: Sequence[float] | None = None,
) -> ProbeResult:
    """Train one linear probe (regulariser chosen on held-out training data), score it on dev."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    x = np.asarray(train_x, dtype=np.float64)
    y = np.asarray(train_y)
    if len(x) < 10:
        raise ReinitlabError(f"a probe needs at least 10 training examples, got {len(x)}")
    grid = tuple(grid or (ALPHA_GRID if task.is_regression else C_GRID))
    strat = None if task.is_regression else y
    if strat is not None and np.min(np.unique(y, return_counts=True)[1]) < 2:
        strat = None
    fit_idx, held_idx = train_test_split(
        np.arange(len(x)), test_size=HELDOUT_FRACTION, random_state=seed, stratify=strat
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        xf, xh = _standardise(x[fit_idx], x[held_idx])
        held = []
        for reg in grid:
            est = _estimator(task, reg, seed).fit(xf, y[fit_idx])
            held.append(_primary(task, _outputs(task, est, xh), y[held_idx]))
        # strongest regularisation among the best: smallest C, largest alpha
        order = sorted(range(len(grid)), key=lambda i: grid[i], reverse=task.is_regression)
        best = max(order, key=lambda i: held[i])
        xa, xd = _standardise(x, np.asarray(dev_x, dtype=np.float64))
        est = _estimator(task, grid[best], seed).fit(xa, y)
        metrics = score(task, _outputs(task, est, xd), np.asarray(dev_y))
    return ProbeResult(metrics, metrics[task.primary_metric], float(grid[best]), held[best])


def probe_layers(
    task: TaskSpec, train_feats, train_y, dev_feats, dev_y, seed: int = 0
) -> list[ProbeResult]:
    """One probe per layer; `*_feats` are [layers, N, d]."""
    return [
        fit_probe(task, tr, train_y, dv, dev_y, seed=seed)
        for tr, dv in zip(train_feats, dev_feats, strict=True)
    ]
