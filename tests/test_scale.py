"""A study of thousands of jobs: a claim reads its own job only (the same files whatever the
sweep's size), and `status` reads each job directory once. Files are counted through Python's
audit hooks (every open and every directory listing), not timed."""

from __future__ import annotations

import re
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from reinitlab.sweep.ledger import Attempt, Ledger, Skip, claim, read_job
from reinitlab.sweep.status import format_status
from tests.helpers import needs_glue
from tests.helpers.finished_sweep import make_finished_sweep, synthetic_key
from tests.test_first_ten_minutes import train_py
from tests.test_sweeps import QUICK

_WATCH: list[list[tuple[str, str]]] = []


def _hook(event: str, args: tuple) -> None:
    if not _WATCH:
        return
    if event == "open" and isinstance(args[0], str | bytes | Path):
        _WATCH[-1].append(("open", str(Path(str(args[0])))))
    elif event in ("os.scandir", "os.listdir"):
        _WATCH[-1].append(("list", str(args[0])))


sys.addaudithook(_hook)


@contextmanager
def file_accesses():
    """Every file opened and every directory listed inside the block, as (kind, path)."""
    seen: list[tuple[str, str]] = []
    _WATCH.append(seen)
    try:
        yield seen
    finally:
        _WATCH.pop()


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    return {n: make_finished_sweep(root / f"sweep{n}", n) for n in (8, 400)}


def relative(seen: list[tuple[str, str]], sweep: Path) -> list[tuple[str, str]]:
    """The accesses with the sweep dir cut off and atomic writes' temp names made one (so two
    sweeps' accesses compare equal)."""
    temp = re.compile(r"\.[^/]*\.tmp\.")
    return sorted((kind, temp.sub(".<tmp>.", str(Path(p).relative_to(sweep)))) for kind, p in seen)


@pytest.mark.parametrize("which", ["new", "completed"])
def test_a_claim_reads_its_own_job_whatever_the_sweep_size(sweeps, which):
    accesses = {}
    for n, sweep in sweeps.items():
        if which == "completed":  # a re-run meets its own record and skips it
            key, out = synthetic_key(3), next(sweep.glob("3_*"))
        else:  # a job added to the sweep: a directory of its own, nothing yet
            key, out = "feedc0de00000000", sweep / f"{n}_feedc0de"
        with file_accesses() as seen:
            got = claim(sweep, key, out, ["seed=99"])
        if which == "completed":
            assert isinstance(got, Skip) and got.reason == "completed" and got.job.dir == out
        else:
            assert isinstance(got, Attempt)
            got.complete()
        files = relative(seen, sweep)
        # only the job's own dir and its lock files, never another job's or the plan
        assert all(p.startswith((out.name, f".locks/{key}")) for _, p in files), files
        assert not any(kind == "list" and p in (".", "") for kind, p in files)
        accesses[n] = [(k, p.replace(out.name, "<job>")) for k, p in files]
    assert accesses[8] == accesses[400]  # the same files, however many jobs the sweep has
    assert accesses[8]  # (and the counting saw something)


def test_a_claim_in_another_directory_still_finds_the_jobs_attempts(tmp_path):
    """A job claimed again from another directory (a second sweeper's numbering) still sees
    its earlier attempt: the key's lock dir lists every directory an attempt started in."""
    sweep = make_finished_sweep(tmp_path / "sweep", 4)
    key = "abcdef0123456789"
    first = claim(sweep, key, sweep / "4_abcdef01", [])
    assert isinstance(first, Attempt)
    first.fail(RuntimeError("boom"))
    second = claim(sweep, key, sweep / "9_other", [])
    assert isinstance(second, Attempt)
    job = read_job(sweep, key, sweep / "9_other")
    assert job is not None and job.state == "running" and job.dir == sweep / "9_other"
    assert sorted(d.name for d in job.dirs) == ["4_abcdef01", "9_other"]
    whole = Ledger(sweep).job(key)  # the same as the whole ledger says
    assert (whole.state, whole.dirs, whole.attempts) == (job.state, job.dirs, job.attempts)
    second.complete()


def test_read_job_agrees_with_the_whole_ledger(sweeps):
    sweep = sweeps[8]
    ledger = Ledger(sweep)
    for job in ledger.jobs:
        own = read_job(sweep, job.key, job.dir)
        assert own is not None
        assert (own.state, own.dir, own.attempts, own.record) == (
            job.state,
            job.dir,
            job.attempts,
            job.record,
        )


def test_status_reads_each_job_directory_once(tmp_path):
    sweep = make_finished_sweep(tmp_path / "sweep", 400)
    with file_accesses() as seen:
        text = format_status(sweep, Ledger(sweep))
    assert text.splitlines()[1].startswith("completed 400 |")
    counts = Counter(seen)
    assert max(counts.values()) == 1, counts.most_common(3)  # no file, no listing read twice
    job_dirs = {p.parent for kind, p in map(lambda x: (x[0], Path(x[1])), seen) if kind == "open"}
    assert len([d for d in job_dirs if d != sweep]) == 400


@needs_glue
def test_the_job_check_once_per_seed_free_job_still_refuses_a_bad_seed(tmp_path):
    """The sweeper checks a job in full once per job that differs only in `seed`, and the
    other seeds with check_seed alone: an invalid seed among valid ones is still refused, with
    the job check's own message, and the valid jobs are not."""
    sweep = tmp_path / "sweep"
    out = train_py("-m", *QUICK, "task=rte", "reinit.k=1,2", "seed=0,-1,1",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "the sweep is refused: 3 of 9 jobs are invalid, so none was launched" in out.stderr
    assert "3 jobs (rte k=1 seed -1; rte k=2 seed -1; rte baseline seed -1)" in out.stderr
    assert "seed=-1: allowed: an integer >= 0 (sweep with seed=0,1,2)" in out.stderr
    assert not sweep.exists()


def test_a_copied_sweep_claims_from_its_own_directories(tmp_path):
    """The key's directory list is relative to the sweep: a copy of a sweep (moved, or copied
    to try something) never reads or skips by the original's job dirs."""
    import shutil

    sweep = make_finished_sweep(tmp_path / "sweep", 4)
    key, out = "abcdef0123456789", sweep / "4_abcdef01"
    first = claim(sweep, key, out, [])
    (out / "result.json").write_text((next(sweep.glob("0_*")) / "result.json").read_text())
    first.complete()
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    shutil.rmtree(copy / "4_abcdef01")  # lost in the copy only
    again = claim(copy, key, copy / "4_abcdef01", [])
    assert isinstance(again, Attempt)  # the original's completed attempt is not the copy's
    again.complete()
    assert read_job(sweep, key, out).state == "completed"
