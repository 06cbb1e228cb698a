"""The sweeper's job composition (each distinct base composed by Hydra once, value overrides
merged) gives exactly Hydra's own config for every job, and its identities set leaf by leaf
exactly the job keys of those configs: the presets' jobs and randomized override sets mixing
group choices, values, `+`/`++`/`~`, interpolations and hydra keys."""

from __future__ import annotations

import random

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.reinitlab_plugins.composer import JobComposer, Progress, same_config
from hydra_plugins.reinitlab_plugins.sweeper import expand
from reinitlab.paths import config_dir
from reinitlab.sweep.jobkey import identity_config
from tests.helpers import GLUE

PRESETS = ("demo", "blocks", "paper_heads", "paper_intermediate", "paper_layers", "permute")


def loader_and_master(tmp_path, *overrides: str):
    """Hydra's config loader and a sweep's master config, as the sweeper gets them."""
    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=str(config_dir()), version_base="1.3")
    master = compose(
        "train",
        overrides=[f"data.glue_dir={GLUE}", f"hydra.sweep.dir={tmp_path}/sweep", *overrides],
        return_hydra_config=True,
    )
    return GlobalHydra.instance().config_loader(), master


def outcome(fn, overrides):
    try:
        return fn(overrides), None
    except Exception as e:  # noqa: BLE001 -- both must refuse the same job the same way
        return None, type(e).__name__


def assert_same_as_hydra(composer: JobComposer, overrides: list[str]) -> bool:
    """Compare with Hydra; True when the composer merged the job (no Hydra composition)."""
    before = composer.hydra_compositions
    ours, our_error = outcome(composer.compose, overrides)
    merged = composer.hydra_compositions == before
    theirs, their_error = outcome(composer.hydra_compose, overrides)
    assert our_error == their_error, overrides
    if theirs is None:
        return merged
    assert same_config(ours, theirs), overrides
    assert OmegaConf.to_container(ours.hydra, resolve=False) == OmegaConf.to_container(
        theirs.hydra, resolve=False
    )
    assert identity_config(ours) == identity_config(theirs), overrides
    fast = composer.fast_identity(overrides)  # the plan's identity without composing the job
    if fast is not None:
        assert fast[0] == identity_config(theirs), overrides
    return merged


def preset_job_overrides(tmp_path, preset: str) -> tuple[JobComposer, list[list[str]]]:
    loader, master = loader_and_master(tmp_path, f"experiment={preset}", "model=tiny")
    params = OmegaConf.to_container(master.hydra.sweeper.params, resolve=True) or {}
    sweep = [f"experiment={preset}", "model=tiny"] + [f"{k}={v}" for k, v in params.items()]
    jobs = expand(OverridesParser.create().parse_overrides(sweep))
    return JobComposer(loader, master), jobs


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_jobs_compose_as_hydra_composes_them(tmp_path, preset):
    composer, jobs = preset_job_overrides(tmp_path, preset)
    sample = random.Random(preset).sample(jobs, min(6, len(jobs)))
    merged = [assert_same_as_hydra(composer, overrides) for overrides in sample]
    assert sum(merged) >= len(sample) - len(composer.bases)  # Hydra: once per base (check)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_job_composes_as_hydra_composes_it(tmp_path, preset):
    composer, jobs = preset_job_overrides(tmp_path, preset)
    merged = [assert_same_as_hydra(composer, overrides) for overrides in jobs]
    assert sum(merged) >= len(jobs) - len(composer.bases)


GROUPS = {
    "task": ["rte", "cola", "stsb", "mrpc", "sst2"],
    "model": ["tiny", "tiny-roberta", "tiny-distilbert"],
    "reinit": ["none", "progressive", "layers", "heads", "block", "permute"],
    "trainer": ["default", "plateau"],
    "seeding": ["derived", "fixed_reinit", "fixed_subset"],
    "experiment": ["demo", "paper_layers"],
}
VALUES = [
    lambda r: f"seed={r.randrange(50)}",
    lambda r: f"reinit.k={r.randrange(1, 5)}",
    lambda r: f"optim.lr={r.choice(['1e-5', '2e-5', '3e-4'])}",
    lambda r: f"data.max_train_samples={r.choice(['null', '64', '128'])}",
    lambda r: f"trainer.max_epochs={r.randrange(1, 4)}",
    lambda r: "optim.weight_decay=${optim.lr}",  # an interpolation
    lambda r: f"hydra.sweep.subdir={r.randrange(9)}_job",
    # structural: each is part of the job's base (composed by Hydra)
    lambda r: "+extra.value=1",
    lambda r: "++optim.lr=5e-5",
    lambda r: "~data.max_train_samples",
    lambda r: "hydra.job.name=job1",
    lambda r: "nonexistent.key=1",  # Hydra refuses it: so must the merge
    lambda r: "intermediate=[cola]",
]


def random_overrides(r: random.Random, bases: list[list[str]]) -> list[str]:
    """Group choices from a few drawn sets (a study has few), values drawn freely."""
    groups = list(r.choice(bases))
    values = [make(r) for make in r.sample(VALUES, r.randrange(0, 4))]
    overrides = groups + values
    r.shuffle(overrides)
    return overrides


@pytest.mark.parametrize(
    ("count", "marks"), [(24, ()), pytest.param(200, (), marks=pytest.mark.slow)]
)
def test_random_override_sets_compose_as_hydra_composes_them(tmp_path, count, marks):
    loader, master = loader_and_master(tmp_path)
    composer = JobComposer(loader, master)
    r = random.Random(count)
    bases = [
        [f"{g}={r.choice(v)}" for g, v in GROUPS.items() if r.random() < 0.5]
        for _ in range(max(2, count // 20))
    ]
    sets = [random_overrides(r, bases) for _ in range(count)]
    merged = [assert_same_as_hydra(composer, overrides) for overrides in sets]
    assert sum(merged) >= count // 5  # many jobs merged onto a base composed before


def test_a_slow_plan_prints_progress_and_a_quick_one_nothing(capsys):
    now = [0.0]
    progress = Progress("composing", 1000)
    progress.clock, progress.start, progress.last = (lambda: now[0]), 0.0, 0.0
    for done in range(1, 1001):
        now[0] = done * 0.01  # 100 jobs a second: 10 s in all
        progress(done)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[reinitlab] composing: 200/1000 jobs (100/s, about 8 s left)"
    assert lines[-1] == "[reinitlab] composing: 1000/1000 jobs (100/s, about 0 s left)"
    assert len(lines) == 5  # every 2 s from 2 s on
    quick = Progress("checking", 10)
    for done in range(1, 11):
        quick(done)
    assert capsys.readouterr().out == ""
