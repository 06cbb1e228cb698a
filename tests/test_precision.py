"""`trainer.precision`: validated before anything loads; bf16-mixed trains end to end on CPU;
the packing check and packed batches behave under autocast."""

from __future__ import annotations

import math

import pytest
import torch

from reinitlab.data.packing import Packer
from reinitlab.errors import ReinitlabError
from reinitlab.training.module import validate_trainer_config
from tests.helpers import FAST, compose_cfg, needs_glue, padded_batch, tiny_model


def cfg_with(tmp_path, *overrides: str):
    return compose_cfg(tmp_path, "model=tiny", "logger=none", *overrides)


def test_default_precision_is_fp32(tmp_path):
    cfg = cfg_with(tmp_path)
    assert cfg.trainer.precision == "32-true"
    assert validate_trainer_config(cfg) == "32-true"


@pytest.mark.parametrize(
    ("value", "expected"), [("32-true", "32-true"), ("32", "32-true"), ("bf16-mixed", "bf16-mixed")]
)
def test_supported_precisions_pass_on_cpu(tmp_path, value, expected):
    cfg = cfg_with(tmp_path, f"trainer.precision={value}", "trainer.accelerator=cpu")
    assert validate_trainer_config(cfg) == expected


@pytest.mark.parametrize("value", ["bf16", "16", "64-true", "fp16", "transformer-engine"])
def test_unknown_precision_names_the_option_value_and_allowed_ones(tmp_path, value):
    cfg = cfg_with(tmp_path, f"trainer.precision={value}")
    with pytest.raises(ReinitlabError) as err:
        validate_trainer_config(cfg)
    msg = str(err.value)
    assert "trainer.precision=" in msg and value in msg and "is not supported" in msg
    for allowed in ("32-true", "bf16-mixed", "16-mixed"):
        assert allowed in msg


@pytest.mark.parametrize("value", ["bf16-true", "16-true"])
def test_half_precision_weights_are_refused_with_the_reason(tmp_path, value):
    with pytest.raises(ReinitlabError, match=f"trainer.precision='{value}' is not supported: it "):
        validate_trainer_config(cfg_with(tmp_path, f"trainer.precision={value}"))


def test_fp16_mixed_is_refused_on_cpu(tmp_path):
    cfg = cfg_with(tmp_path, "trainer.precision=16-mixed", "trainer.accelerator=cpu")
    with pytest.raises(
        ReinitlabError, match="trainer.precision=16-mixed needs a CUDA device.*accelerator=cpu"
    ):
        validate_trainer_config(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto resolves to the GPU here")
def test_fp16_mixed_is_refused_when_auto_resolves_to_cpu(tmp_path):
    cfg = cfg_with(tmp_path, "trainer.precision=16-mixed")  # accelerator: auto
    with pytest.raises(ReinitlabError, match="Use trainer.precision=bf16-mixed or 32-true on CPU"):
        validate_trainer_config(cfg)


def test_bf16_mixed_is_refused_on_a_gpu_without_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    cfg = cfg_with(tmp_path, "trainer.precision=bf16-mixed")
    with pytest.raises(ReinitlabError, match="Tesla V100 has 7.0"):
        validate_trainer_config(cfg)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert validate_trainer_config(cfg) == "bf16-mixed"
    cfg16 = cfg_with(tmp_path, "trainer.precision=16-mixed")
    assert validate_trainer_config(cfg16) == "16-mixed"  # a CUDA device: allowed


@pytest.mark.parametrize(("family", "attention"), [("bert", "sdpa"), ("roberta", "eager")])
def test_the_packing_check_passes_under_autocast(family, attention):
    """Packer.check compares in fp32 with autocast off, so building the packer inside a bf16
    autocast region (as Lightning's bf16-mixed training_step is) still accepts the model."""
    model = tiny_model(family)
    model.config._attn_implementation = attention
    seen = []

    def spy(module, args, output):
        seen.append((torch.is_autocast_enabled("cpu"), output[0].dtype))

    handle = model.base_model.encoder.register_forward_hook(spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        Packer.for_model(model)
    handle.remove()
    assert seen == [(False, torch.float32)] * 2  # padded and packed run, both in fp32


def test_packed_batch_matches_padded_under_bf16_autocast():
    model = tiny_model("bert", num_labels=1)
    batch = padded_batch([9, 64, 12, 3, 40, 7], 1)
    packer = Packer.for_model(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded, packed = model(**batch), packer(batch)
    assert padded.logits.dtype == torch.bfloat16
    torch.testing.assert_close(packed.logits, padded.logits, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(packed.loss, padded.loss, rtol=2e-2, atol=2e-3)


@needs_glue
def test_tiny_job_trains_with_bf16_mixed_on_cpu(tmp_path):
    from reinitlab.train import train

    cfg = compose_cfg(
        tmp_path,
        *FAST,
        "task=stsb",
        "reinit.k=2",
        "trainer.precision=bf16-mixed",
        "trainer.accelerator=cpu",
    )
    assert validate_trainer_config(cfg) == "bf16-mixed"
    record = train(cfg)
    assert record["config"]["trainer"]["precision"] == "bf16-mixed"
    assert record["device"] == "cpu" and record["steps"] == 2
    metrics = record["final"]["metrics"]
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert record["deltas"]["layer"]["all"] and all(
        math.isfinite(x) for x in record["deltas"]["layer"]["all"]
    )


def fit_a_few_steps(
    precision: str, clip: float, fused: bool = True, steps: int = 3, accelerator: str = "cpu"
):
    """Train GlueClassifier (tiny BERT, CoLA head) for `steps` on fixed batches; returns the
    total gradient norm each optimizer step used (after any clipping) and the optimizer."""
    import lightning as L

    from reinitlab.data.tasks import load_task
    from reinitlab.training.module import GlueClassifier

    batches = [padded_batch([9, 30, 12, 3], 2) for _ in range(steps)]
    norms: list[float] = []

    class GradNorm(L.Callback):  # the norm the optimizer steps with (after any clipping)
        def on_train_start(self, trainer, pl_module):
            def record(optimizer, args, kwargs):
                grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
                norms.append(torch.linalg.vector_norm(torch.stack(grads)).item())

            trainer.optimizers[0].register_step_post_hook(record)

    module = GlueClassifier(tiny_model("bert"), load_task("cola"), lr=1e-3, fused=fused)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        gradient_clip_val=clip,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[GradNorm()],
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return norms, trainer.optimizers[0]


def test_bf16_mixed_clips_gradients_before_the_fused_step():
    """Lightning's AMP plugin refuses clipping with a fused optimizer; bf16-mixed (no loss
    scaling) clips as fp32 does, so the recipe's clip at 1.0 still applies."""
    unclipped, _ = fit_a_few_steps("bf16-mixed", clip=0.0)
    assert min(unclipped) > 1e-2  # the tiny model's gradients are larger than the clip below
    norms, optimizer = fit_a_few_steps("bf16-mixed", clip=1e-3)
    assert optimizer.defaults["fused"] is True
    assert max(norms) <= 1e-3 * (1 + 1e-4), norms


def test_train_refuses_fp16_mixed_on_cpu_before_anything_loads(tmp_path):
    from reinitlab.errors import ReinitlabError
    from reinitlab.train import train

    cfg = compose_cfg(
        tmp_path, "model=tiny", "trainer.precision=16-mixed", "trainer.accelerator=cpu"
    )
    with pytest.raises(ReinitlabError, match="trainer.precision"):
        train(cfg)
    assert not (tmp_path / "out" / "result.json").exists()
