"""Stacked training (`hydra/launcher=stacked`): members equal their solo runs, fail alone, and
are recorded through the ledger as ordinary jobs."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from reinitlab.errors import ReinitlabError
from reinitlab.reinit import install_head_masks
from reinitlab.stack.plan import GIB, plan_stacks, stack_key, why_solo
from reinitlab.stack.run import StackMember, train_stack
from reinitlab.stack.stacked import StackedModel
from reinitlab.sweep.ledger import Ledger
from reinitlab.train import train
from reinitlab.training.builder import job_config
from tests.helpers import FAST, REPO, compose_cfg, needs_glue, padded_batch, tiny_model
from tests.test_sweeps import QUICK, multirun, records

# Dropout off, so a member and its solo run draw nothing at random after their common start.
NO_DROPOUT = (
    "+model.config_overrides.hidden_dropout_prob=0.0",
    "+model.config_overrides.attention_probs_dropout_prob=0.0",
)
SCHEMES = {  # one of each kind: the baseline, layer resets, head resets, head masks
    "baseline": ("reinit=none",),
    "k2": ("reinit.k=2",),
    "heads": ("reinit=heads", "reinit.heads=[[1,2],[3,4]]"),
    "mask": ("reinit=heads", "reinit.heads=[[1,1],[2,4]]", "reinit.mode=mask"),
}
CELL = (*FAST, *NO_DROPOUT, "task=stsb", "data.max_train_samples=96", "trainer.max_epochs=2")
# Float tolerance of a member vs its solo run: the stack runs eager attention (solo: sdpa) and
# batched matmuls, so sums are ordered differently; after 6 AdamW steps at lr 2e-5 weights agree
# to ~1e-8 (measured: <= 6e-9), dev Pearson correlations to ~1e-5.
WEIGHT_ATOL = 1e-6
METRIC_ATOL = 1e-4


def members_of(tmp_path, names, *extra):
    """Stack members for SCHEMES[names], their configs resolved as the launcher resolves them."""
    out = []
    for name in names:
        cfg = compose_cfg(tmp_path / f"stack-{name}", *CELL, *SCHEMES[name], *extra)
        out.append(StackMember(OmegaConf.create(job_config(cfg))))
    return out


class FinalWeights(L.Callback):
    def on_fit_end(self, trainer, pl_module):
        self.weights = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}


@pytest.fixture(scope="module")
def solo_runs(tmp_path_factory):
    """Each scheme of SCHEMES trained alone: (record, final weights)."""
    tmp = tmp_path_factory.mktemp("solo")
    runs = {}
    for name, overrides in SCHEMES.items():
        capture = FinalWeights()
        record = train(compose_cfg(tmp / name, *CELL, *overrides), [capture])
        runs[name] = (record, capture.weights)
    return runs


def max_weight_diff(model, weights) -> float:
    return max((weights[n] - p).abs().max().item() for n, p in model.named_parameters())


# -- the stacked model, pure PyTorch --------------------------------------------------------------


def three_members():
    base = tiny_model("bert", "classification", layers=2, heads=4)
    members = [copy.deepcopy(base) for _ in range(3)]
    g = torch.Generator().manual_seed(1)
    for k, m in enumerate(members[1:], start=1):
        for p in m.parameters():
            p.data += 0.05 * k * torch.randn(p.shape, generator=g)
    install_head_masks(members[2], MASKED[2])  # member 2 masks two heads
    return members


MASKED = [[], [], [(0, 1), (1, 3)]]  # three_members()'s masked (layer, head) pairs, 0-based


def test_stacked_forward_and_gradients_are_each_members_own():
    members = three_members()
    stack = StackedModel(members, MASKED)
    batch = padded_batch([7, 5, 3, 6], num_labels=2)
    losses, logits = stack.run(batch)
    losses.sum().backward()
    for k, m in enumerate(members):
        out = m(**batch)
        out.loss.backward()
        assert torch.allclose(losses[k], out.loss, atol=1e-6)
        assert torch.allclose(logits[k], out.logits, atol=1e-6)
        for name, p in m.named_parameters():
            assert torch.allclose(stack.weights[name.replace(".", "__")].grad[k], p.grad, atol=1e-6)
    # the mask matters: without it member 2's logits differ
    unmasked = StackedModel(members)
    assert not torch.allclose(unmasked.run(batch)[1][2], logits[2], atol=1e-4)


def test_gradient_clipping_is_per_member_as_torch_clips_one_model():
    members = three_members()
    stack = StackedModel(members, MASKED)
    batch = padded_batch([7, 5, 3, 6], num_labels=2)
    (stack.run(batch)[0] * torch.tensor([1.0, 50.0, 0.01])).sum().backward()
    norms = stack.clip_grad_norm_(0.5)
    for k, (m, scale) in enumerate(zip(members, [1.0, 50.0, 0.01], strict=True)):
        (m(**batch).loss * scale).backward()
        norm = torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
        assert torch.isclose(norms[k], norm, rtol=1e-5)
        for name, p in m.named_parameters():
            got = stack.weights[name.replace(".", "__")].grad[k]
            assert torch.allclose(got, p.grad, atol=1e-7)
    assert norms[1] > 0.5 > norms[2]  # one member clipped, one not: coefficients are per member


def test_weights_copy_back_and_a_failed_members_gradients_are_zeroed():
    members = three_members()
    stack = StackedModel(members, MASKED)
    stack.run(padded_batch([4, 4], num_labels=2))[0].sum().backward()
    stack.zero_member_grads([1])
    assert all(p.grad[1].abs().sum() == 0 and p.grad[0].abs().sum() > 0 for p in stack.parameters())
    fresh = copy.deepcopy(members[0])
    stack.copy_member_into(2, fresh)
    pairs = zip(fresh.parameters(), members[2].parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


# -- a stack trains each member as its solo run ----------------------------------------------------


@needs_glue
def test_each_member_ends_at_its_solo_runs_weights_and_metrics(tmp_path, solo_runs):
    names = list(SCHEMES)
    members = members_of(tmp_path, names)
    outcomes = train_stack(members)
    for k, (name, member, record) in enumerate(zip(names, members, outcomes, strict=True)):
        solo_record, solo_weights = solo_runs[name]
        assert max_weight_diff(member.job.model, solo_weights) < WEIGHT_ATOL, name
        assert record["steps"] == solo_record["steps"] == 6
        assert record["reset_values"] == solo_record["reset_values"]
        assert record["reinit_plan"] == solo_record["reinit_plan"]
        for ours, theirs in zip(record["history"], solo_record["history"], strict=True):
            for metric, value in theirs["metrics"].items():
                assert ours["metrics"][metric] == pytest.approx(value, abs=METRIC_ATOL), metric
        assert record["stacked"]["members"] == 4 and record["stacked"]["index"] == k
        assert record["deltas"]["layer"]["all"] == pytest.approx(
            solo_record["deltas"]["layer"]["all"], abs=1e-4
        )
        written = json.loads((tmp_path / f"stack-{name}" / "out" / "result.json").read_text())
        assert written["stacked"] == record["stacked"]
    assert solo_runs["k2"][0]["reset_values"] > 0  # the schemes did reset weights
    assert solo_runs["mask"][0]["reinit_plan"]["masked_heads"] == [[1, 1], [2, 4]]


class PoisonMember(L.Callback):
    """Member 1's weights become NaN after the first step: it diverges."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            with torch.no_grad():
                for p in pl_module.stack.parameters():
                    p[1] = float("nan")


@needs_glue
def test_a_member_that_diverges_fails_alone_and_the_others_are_untouched(tmp_path, solo_runs):
    names = ["baseline", "k2", "mask"]
    members = members_of(tmp_path, names)
    outcomes = train_stack(members, extra_callbacks=[PoisonMember()])
    assert isinstance(outcomes[1], ReinitlabError)
    assert "NaN" in str(outcomes[1]) and "after epoch 1" in str(outcomes[1])
    assert not (tmp_path / "stack-k2" / "out" / "result.json").exists()
    for k in (0, 2):
        assert isinstance(outcomes[k], dict)
        weights = solo_runs[names[k]][1]
        assert max_weight_diff(members[k].job.model, weights) < WEIGHT_ATOL, names[k]


@needs_glue
def test_a_member_that_cannot_be_built_fails_alone(tmp_path):
    members = members_of(tmp_path, ["baseline", "k2"])
    members.append(members_of(tmp_path, ["k2"], "reinit.k=9")[0])  # tiny has 3 layers
    outcomes = train_stack(members)
    assert isinstance(outcomes[2], ReinitlabError) and "reinit.k" in str(outcomes[2])
    assert all(isinstance(o, dict) and o["stacked"]["members"] == 2 for o in outcomes[:2])


# -- which jobs stack ------------------------------------------------------------------------------


def test_jobs_stack_when_they_differ_only_in_reinit(tmp_path):
    cfgs = [
        compose_cfg(tmp_path, *FAST, "reinit.k=1"),
        compose_cfg(tmp_path, *FAST, "reinit.k=2"),
        compose_cfg(tmp_path, *FAST, "reinit=heads", "reinit.layer=1", "reinit.head=2"),
        compose_cfg(tmp_path, *FAST, "reinit.k=1", "seed=1"),  # another seed: another cell
        compose_cfg(tmp_path, *FAST, "reinit.k=2", "seed=1"),
        compose_cfg(tmp_path, *FAST, "reinit.k=1", "optim.lr=1e-4"),  # another recipe: alone
        compose_cfg(tmp_path, *FAST, "reinit.k=3", "trainer=plateau"),
        compose_cfg(tmp_path, *FAST, "reinit.k=3", "intermediate=[wnli]"),
    ]
    assert stack_key(cfgs[0]) == stack_key(cfgs[2]) != stack_key(cfgs[3])
    plan = plan_stacks(cfgs, members=8, budget=GIB)
    assert plan.stacks == [[0, 1, 2], [3, 4]]
    assert plan.solo == {
        5: "no other job differs from it only in reinit",
        6: "early stopping would stop members at different epochs",
        7: "an intermediate-task chain trains solo",
    }
    assert why_solo(compose_cfg(tmp_path, *FAST, "task=squad_v2")) == (
        "question answering trains solo"
    )


def test_a_group_is_cut_into_stacks_that_fit_the_memory_budget(tmp_path):
    cfgs = [compose_cfg(tmp_path, *FAST, f"reinit.k={k}") for k in (1, 2, 3)] * 2
    cfgs += [compose_cfg(tmp_path, *FAST, "reinit=none")]  # 7 jobs, one cell
    key = stack_key(cfgs[0])
    assert plan_stacks(cfgs, 8, budget=GIB, sizes={key: GIB // 8}).stacks == [list(range(7))]
    assert plan_stacks(cfgs, 4, budget=GIB, sizes={key: GIB // 8}).stacks == [
        [0, 1, 2, 3],
        [4, 5, 6],
    ]
    small = plan_stacks(cfgs, 8, budget=GIB, sizes={key: GIB // 3})  # 3 members fit
    assert small.stacks == [[0, 1, 2], [3, 4, 5], [6]] or small.stacks == [
        [0, 1, 2],
        [3, 4],
        [5, 6],
    ]
    assert "stacks of at most 3" in small.notes[0]
    none = plan_stacks(cfgs, 8, budget=GIB, sizes={key: GIB})  # two members do not fit
    assert none.stacks == [] and len(none.solo) == 7
    assert "more than the 1.0 GiB budget (hydra.launcher.memory_gb)" in none.notes[0]


def test_the_memory_estimate_grows_with_the_model_and_the_batch(tmp_path):
    from reinitlab.stack.plan import member_bytes

    tiny = member_bytes(compose_cfg(tmp_path, *FAST))
    wide = member_bytes(compose_cfg(tmp_path, *FAST, "data.batch_size=64"))
    params = 16 * sum(p.numel() for p in tiny_model_from(compose_cfg(tmp_path, *FAST)).parameters())
    assert params < tiny < wide


def tiny_model_from(cfg):
    from reinitlab.data.tasks import TaskSpec
    from reinitlab.training.models import load_model

    return load_model(cfg.model, TaskSpec.from_config(cfg.task), head_seed=0)


def test_bad_launcher_options_name_the_option_and_what_is_allowed():
    from hydra_plugins.reinitlab_plugins.stacked_launcher import StackedLauncher

    with pytest.raises(ReinitlabError, match=r"hydra.launcher.attention='flash'; allowed: eager"):
        StackedLauncher(attention="flash")
    with pytest.raises(ReinitlabError, match=r"hydra.launcher.members=0: must be at least 1"):
        StackedLauncher(members=0)
    with pytest.raises(ReinitlabError, match=r"hydra.launcher.memory_gb=-1: must be positive"):
        StackedLauncher(memory_gb=-1)


# -- through Hydra and the ledger ------------------------------------------------------------------

STACKED = ("hydra/launcher=stacked", "task=wnli", "reinit.k=1,2,3", "seed=0")  # + baseline


@needs_glue
def test_a_stacked_sweep_records_each_member_as_a_job_and_reruns_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    done = multirun(sweep, *STACKED)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stacked launcher: 4 jobs in 1 stacks, 0 solo" in done.stdout
    recs = records(sweep)
    assert len(recs) == 4  # three schemes and the added baseline, each in its own job dir
    assert {r["scheme"]["label"] for r in recs.values()} == {"k=1", "k=2", "k=3", "baseline"}
    assert {r["stacked"]["members"] for r in recs.values()} == {4}
    assert sorted(r["stacked"]["index"] for r in recs.values()) == [0, 1, 2, 3]
    assert all((p.parent / ".hydra" / "overrides.yaml").is_file() for p in recs)
    assert Ledger(sweep).counts()["completed"] == 4
    again = multirun(sweep, *STACKED)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 already completed, 0 running elsewhere, 0 to run" in again.stdout
    assert records(sweep) == recs


@needs_glue
def test_jobs_that_cannot_stack_run_solo_in_the_same_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    done = multirun(
        sweep, "hydra/launcher=stacked", "task=wnli", "reinit.k=1", "trainer=default,plateau"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stacked launcher: 2 jobs in 1 stacks, 2 solo" in done.stdout
    assert "solo (early stopping would stop members at different epochs)" in done.stdout
    recs = list(records(sweep).values())
    stacked = sorted(r["scheme"]["label"] for r in recs if "stacked" in r)
    solo = sorted(r["scheme"]["label"] for r in recs if "stacked" not in r)
    assert stacked == solo == ["baseline", "k=1"]
    assert all(r["config"]["early_stopping"] for r in recs if "stacked" not in r)


@pytest.mark.slow
@needs_glue
def test_a_killed_stack_reruns_only_its_unfinished_members(tmp_path):
    sweep = tmp_path / "sweep"
    base = tuple(a for a in QUICK if "limit_" not in a and "max_epochs" not in a)
    base += ("data.max_train_samples=256", "trainer.max_epochs=10")  # ~10 s a stack of 2
    first = multirun(sweep, "task=wnli", "reinit.k=1", "seed=0", base=base)  # k=1 + baseline
    assert first.returncode == 0, first.stderr[-3000:]
    before = records(sweep)
    assert len(before) == 2
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
    cmd = [sys.executable, str(REPO / "train.py"), "-m", *base, *STACKED]
    cmd += [f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    seen = ""
    while "stack of 2" not in seen:
        line = proc.stdout.readline()
        assert line, seen[-3000:]
        seen += line
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    ledger = Ledger(sweep)
    assert ledger.counts()["completed"] == 2 and ledger.counts()["failed"] == 2
    assert {j.kind for j in ledger.by_state("failed")} == {"killed"}

    again = multirun(sweep, *STACKED, base=base)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 jobs (1 baselines added); 2 already completed, 0 running elsewhere, 2 to run" in (
        again.stdout
    )
    recs = records(sweep)
    assert len(recs) == 4
    assert all(recs[path] == record for path, record in before.items())  # untouched
    assert sorted(r["stacked"]["members"] for r in recs.values() if "stacked" in r) == [2, 2]
    finished = {r["job_key"] for r in before.values()}
    assert all(j.attempts == 2 for j in Ledger(sweep).jobs if j.key not in finished)


@pytest.mark.slow
@needs_glue
def test_each_member_of_a_stack_has_its_own_wandb_run(tmp_path):
    from tests.helpers.wandb_reader import find_run_files, read_run
    from tests.test_deltas import assert_run_matches_record

    sweep = tmp_path / "sweep"
    base = tuple(a for a in QUICK if a != "logger=none")
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
    done = multirun(sweep, *STACKED, "logger=wandb", "study=stacked", base=base, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    recs = list(records(sweep).values())
    runs = [read_run(f) for f in find_run_files(sweep)]
    assert len(runs) == len(recs) == 4 and len({r["run_id"] for r in runs}) == 4
    for rec in recs:
        (run,) = [r for r in runs if r["run_id"] == rec["wandb_id"]]
        assert run["config"]["label"] == rec["scheme"]["label"] and run["group"] == "stacked"
        assert_run_matches_record(run, rec)
        assert run["summary"]["val/primary"]["last"] == pytest.approx(
            rec["final"]["metrics"]["val/primary"]
        )


@pytest.mark.gpu
@needs_glue
def test_a_stack_on_cuda_ends_at_its_solo_runs_weights(tmp_path):
    cuda = ("trainer.accelerator=gpu", "trainer.precision=32-true")
    names = ["baseline", "k2", "mask"]
    solo = {}
    for name in names:
        capture = FinalWeights()
        train(compose_cfg(tmp_path / f"solo-{name}", *CELL, *SCHEMES[name], *cuda), [capture])
        solo[name] = {n: w.cpu() for n, w in capture.weights.items()}
    members = members_of(tmp_path, names, *cuda)
    outcomes = train_stack(members)
    for name, member, record in zip(names, members, outcomes, strict=True):
        assert record["device"].startswith("cuda")
        assert max_weight_diff(member.job.model, solo[name]) < 1e-5, name
