"""reinitlab's training loop is the recipe a user would otherwise run with the HF Trainer.

Given the same initial weights, the same example order and dropout off (the only randomness
left in fine-tuning), reinitlab's loop (Lightning, fused AdamW, linear warmup/decay, weight
decay groups, clipping, packed batches) and the Hugging Face `Trainer` (run_glue.py's
recipe, dynamic padding) must end at the same weights. This is what lets the benchmark compare
the two on dev metrics, and it pins the recipe against silent drift in either library.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tests.helpers import GLUE, compose_cfg, needs_glue, tiny_model

LR, BATCH = 1e-3, 32  # a large lr so that every tensor moves far beyond float noise


def no_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class StartFrom(L.Callback):
    """Load the given initial weights at fit start (after the reinit callback: k=null does
    nothing) and keep the final weights."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def on_fit_start(self, trainer, pl_module):
        pl_module.model.load_state_dict(self.state)
        no_dropout(pl_module.model)

    def on_train_end(self, trainer, pl_module):
        self.final = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        self.steps = trainer.global_step


def hf_trainer_final_weights(tmp_path, cfg, task, init: dict[str, torch.Tensor]):
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from reinitlab.data.glue_io import load_split
    from reinitlab.training.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    ex = load_split(task, "train", GLUE)
    ds = Dataset.from_dict({"a": ex.text_a, "b": ex.text_b, "label": ex.labels}).map(
        lambda rows: tokenizer(rows["a"], rows["b"], truncation=True, max_length=128),
        batched=True,
        remove_columns=["a", "b"],
    )
    model = load_model(cfg.model, task, head_seed=0)
    model.load_state_dict(init)
    no_dropout(model)

    class InFileOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        weight_decay=0.01,
        warmup_steps=0.1,  # a ratio when < 1 (transformers 5)
        max_grad_norm=1.0,
        num_train_epochs=1,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    collator = DataCollatorWithPadding(tokenizer)
    InFileOrder(model=model, args=args, train_dataset=ds, data_collator=collator).train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@needs_glue
def test_reinitlab_loop_ends_where_the_hf_trainer_ends(tmp_path, monkeypatch):
    from reinitlab.data.batching import EpochSampler
    from reinitlab.data.tasks import load_task
    from reinitlab.train import train
    from reinitlab.training.models import load_model

    task = load_task("wnli")
    cfg = compose_cfg(
        tmp_path,
        "model=tiny",
        "logger=none",
        "task=wnli",
        "trainer.max_epochs=1",
        f"optim.lr={LR}",
        f"data.batch_size={BATCH}",
        "deltas.enabled=false",
    )
    init = load_model(cfg.model, task, head_seed=123).state_dict()
    expected = hf_trainer_final_weights(tmp_path, cfg, task, init)

    monkeypatch.setattr(EpochSampler, "permutation", lambda self: list(range(self.num_samples)))
    start = StartFrom(init)
    record = train(cfg, extra_callbacks=[start])
    assert record["train_size"] == 635 and start.steps == 20  # all of WNLI, ceil(635 / 32)

    moved = {k: (expected[k] - init[k]).abs().max().item() for k in init}
    for key, final in start.final.items():
        if "key.bias" in key:  # its gradient is 0 in exact arithmetic: Adam scales up noise
            continue
        assert moved[key] > 1e-4, key  # every compared tensor really moved
        gap = (final - expected[key]).abs().max().item()
        # measured: <= 4e-5 of the movement (0 with optim.remove_padding=off: bit-identical);
        # weight decay 0.01 left out on one side gives 2e-3, no warmup 3.3
        assert gap <= 5e-4 * moved[key], f"{key}: differs by {gap:.3g}, moved {moved[key]:.3g}"
    assert start.final.keys() == expected.keys()


def test_no_dropout_really_turns_every_dropout_off():
    model = tiny_model(  # BERT's own vocabulary and dropout
        "bert",
        layers=1,
        hidden=32,
        heads=2,
        intermediate=64,
        vocab_size=30522,
        dropout=None,
        seed=None,
    )
    no_dropout(model)
    model.train()
    ids = torch.tensor([[101, 2000, 2001, 102]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    assert pytest.approx(0.0) == max(
        m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)
    )
