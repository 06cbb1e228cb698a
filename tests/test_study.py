"""The study name and the flat W&B filter keys of a job (no training: config and checks only)."""

from __future__ import annotations

from reinitlab.job import check_job, run_filters
from reinitlab.sweep.jobkey import job_key
from reinitlab.training.builder import study_name
from tests.helpers import TINY, compose_cfg


def filters(tmp_path, *overrides):
    cfg = compose_cfg(tmp_path, *TINY, "task=rte", *overrides)
    return run_filters(check_job(cfg), cfg)


def test_flat_keys_place_each_scheme_on_its_axis(tmp_path):
    # tiny BERT: 3 layers, so the baseline sits at k = L+1 = 4
    assert filters(tmp_path, "reinit.k=2", "seed=1") == {
        "study": None,
        "task_name": "rte",
        "model_name": "tiny",
        "scheme": "progressive",
        "label": "k=2",
        "is_baseline": False,
        "k": 2,
        "layer": None,
        "head": None,
        "seed": 1,
    }
    base = filters(tmp_path, "reinit=none")
    assert base["is_baseline"] and base["k"] == 4 and base["label"] == "baseline"
    assert filters(tmp_path, "reinit.k=4")["k"] == 4  # k=L+1 spelled out: the same point
    heads = filters(tmp_path, "reinit=heads", "reinit.layer=2", "reinit.head=3", "study=s1")
    assert (heads["layer"], heads["head"], heads["k"], heads["label"]) == (2, 3, None, "L2H3")
    assert heads["study"] == "s1"
    two = filters(tmp_path, "reinit=heads", "reinit.heads=[[1,1],[2,2]]")
    assert (two["layer"], two["head"]) == (None, None)  # not one cell of the head grid


def test_study_names_runs_without_changing_their_identity(tmp_path):
    plain = compose_cfg(tmp_path, *TINY, "reinit.k=2")
    named = compose_cfg(tmp_path, *TINY, "reinit.k=2", "study=layers-v2")
    assert study_name(plain) is None and study_name(named) == "layers-v2"
    assert job_key(plain) == job_key(named)  # renaming a study never re-runs its jobs
