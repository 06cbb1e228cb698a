"""Preemption: a job checkpoints on the signal, and its re-run resumes to identical metrics."""

from __future__ import annotations

import pytest

from reinitlab.data.batching import EpochSampler
from reinitlab.sweep.status import sweep_status
from reinitlab.training.resume import CHECKPOINT_RELPATH, PREEMPT_AT_STEP_ENV
from tests.helpers import GLUE, needs_glue
from tests.helpers.wandb_reader import find_run_files, read_run
from tests.test_sweeps import multirun, records

# 128 examples / batch 32 = 4 steps per epoch, 2 epochs; STS-B's Pearson r is continuous, so
# any difference in data order, dropout or optimizer state shows in the metrics.
JOB = (
    "model=tiny",
    f"data.glue_dir={GLUE}",
    "task=stsb",
    "reinit.k=2",
    "seed=0",
    "logger=wandb",
    "data.max_train_samples=128",
    "trainer.max_epochs=2",
    "+trainer.limit_val_batches=2",
    "optim.lr=1e-3",
    "hydra.sweeper.add_baselines=false",
)


def test_epoch_sampler_is_a_function_of_seed_and_epoch_and_skips_once():
    s = EpochSampler(10, seed=3)
    first = list(s)
    assert sorted(first) == list(range(10)) and list(EpochSampler(10, seed=3)) == first
    s.set_epoch(1)
    second = list(s)
    assert second != first and sorted(second) == list(range(10))
    s.skip = 4
    assert list(s) == second[4:]
    assert list(s) == second  # the skip applies once


@needs_glue
def test_preempted_job_resumes_from_its_checkpoint_with_identical_metrics(tmp_path):
    ref = multirun(tmp_path / "ref", *JOB, base=())
    assert ref.returncode == 0, ref.stderr[-3000:]
    (expected,) = records(tmp_path / "ref").values()
    assert expected["steps"] == 8 and expected["resumed_from"] is None

    sweep = tmp_path / "sweep"
    cut = multirun(sweep, *JOB, env={PREEMPT_AT_STEP_ENV: "3"}, base=())
    assert cut.returncode != 0 and "got SIGUSR2 at step 3" in cut.stdout + cut.stderr
    assert records(sweep) == {}
    (job_dir,) = [p.parent for p in sweep.glob("*/job.json")]
    assert (job_dir / CHECKPOINT_RELPATH).is_file()
    st = sweep_status(sweep)
    assert st.counts()["failed"] == 1
    assert st.by_state("failed")[0].kind == "preempted"

    again = multirun(sweep, *JOB, base=())
    assert again.returncode == 0, again.stderr[-3000:]
    (rec,) = records(sweep).values()
    assert rec["resumed_from"] == str(job_dir / CHECKPOINT_RELPATH)
    assert rec["steps"] == 8 and rec["steps_this_process"] == 5  # steps 4..8 only
    assert rec["history"] == expected["history"]  # bit-identical dev metrics, both epochs
    assert rec["final"] == expected["final"] and rec["best"] == expected["best"]
    assert rec["reset_tensors"] == expected["reset_tensors"]
    assert not (job_dir / CHECKPOINT_RELPATH).exists()  # removed once the result is written
    assert sweep_status(sweep).counts() == {
        "completed": 1,
        "failed": 0,
        "missing": 0,
        "running": 0,
        "corrupt": 0,
    }

    runs = [read_run(f) for f in find_run_files(job_dir)]
    assert len(runs) == 2 and {r["run_id"] for r in runs} == {rec["wandb_id"]}


@pytest.mark.slow
@needs_glue
@pytest.mark.parametrize("step", [4, 6])
def test_resume_at_an_epoch_end_and_in_the_second_epoch(tmp_path, step):
    ref = multirun(tmp_path / "ref", *JOB, base=())
    (expected,) = records(tmp_path / "ref").values()
    sweep = tmp_path / "sweep"
    assert multirun(sweep, *JOB, env={PREEMPT_AT_STEP_ENV: str(step)}, base=()).returncode != 0
    assert multirun(sweep, *JOB, base=()).returncode == 0
    (rec,) = records(sweep).values()
    assert rec["history"] == expected["history"] and ref.returncode == 0
    # at an epoch's last batch the checkpoint waits for the next batch (after validation)
    assert rec["steps_this_process"] == 8 - (step + 1 if step == 4 else step)
