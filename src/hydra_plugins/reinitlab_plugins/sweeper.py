"""`hydra/sweeper=reinitlab` (the default): Hydra's basic sweeper, plus the study's baselines
and the sweep ledger (`reinitlab.sweep.ledger`).

A reinit study is meaningless without its baseline, and `reinit.k=range(1,13)` on a 12-layer
model leaves it out. For every group of jobs whose configs are identical except for `reinit`
(so: the same task, model, seed, training-set size, and anything else swept), this sweeper
adds one `reinit=none` job unless the group already has a baseline (`reinit=none`, or
`progressive` with k=null or k=L+1). It never adds a job whose config is already in the sweep,
and drops exact duplicates.

The plan (every job's key, overrides, label and directory) is merged into the ledger's
`<sweep dir>/sweep_plan.json`. Each job runs in its own directory `<plan index>_<key>`, the
same on every re-run and requeue, so a sweep dir never holds two attempts of one job as two
runs. With `skip_completed` (default), jobs the ledger has as completed -- or running in
another live process -- are not launched at all; re-running a finished sweep says so and exits
0. Each job also claims its key for itself (`reinitlab.sweep.job`), which is what keeps two
sweeps started together from training a job twice.

Before anything is launched or written, every job to run is composed and put through the
checks the job itself runs before loading weights (`reinitlab.job.check_job`),
and every local data file it reads is parsed once (`reinitlab.data.content`, file and line):
one invalid job refuses the whole sweep (exit 2), listing each job with its reason, and a
reason shared by many jobs (a model that cannot be loaded) once -- an error found in seconds,
not after hours of the jobs before it. `dry_run=true` stops there and lists the jobs.

Jobs run one at a time on Hydra's basic launcher (so a progress line precedes each, and a full
disk stops the sweep at the first job that hits it); other launchers get the whole sweep at
once. The sweep ends with a results table read from the ledger and the report command; a sweep
with failed jobs adds one line naming how many and exits 1.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.reinitlab_plugins.composer import JobComposer, Progress
from hydra_plugins.reinitlab_plugins.local_launcher import LocalLauncher
from reinitlab.sweep.overrides import expand, is_reinit_override

log = logging.getLogger(__name__)


def baseline_overrides(overrides: list[str]) -> list[str]:
    """The job's overrides with every reinit choice replaced by the untouched model."""
    return [o for o in overrides if not is_reinit_override(o)] + ["reinit=none"]


class _LayerCounts:
    """Layer counts per model config, looked up once (None when unknown, e.g. hub offline)."""

    def __init__(self) -> None:
        self.cache: dict[str, int | None] = {}

    def __call__(self, model_cfg: DictConfig) -> int | None:
        name = str(model_cfg.get("name"))
        if name not in self.cache:
            try:
                if model_cfg.get("source") == "random":
                    self.cache[name] = int(model_cfg.config.num_hidden_layers)
                else:
                    from reinitlab.training.models import load_config

                    self.cache[name] = int(load_config(model_cfg).num_hidden_layers)
            except Exception as e:  # noqa: BLE001 -- the job checks (validate) say why
                log.debug("layer count of model %s unknown (%s)", name, e)
                self.cache[name] = None
        return self.cache[name]


def is_baseline(reinit: DictConfig | dict[str, Any], num_layers: int | None) -> bool:
    """Whether the scheme selects nothing: `none`, progressive k=null/L+1, and any scheme left at
    its defaults (e.g. the presets' own `block`/`heads`/`permute` baselines); the scheme
    registry decides, against the model when its layer count is known."""
    from reinitlab.errors import ReinitlabError
    from reinitlab.reinit import SCHEMES, resolve_scheme

    params = (
        dict(reinit) if isinstance(reinit, dict) else OmegaConf.to_container(reinit, resolve=True)
    )
    impl = SCHEMES.get(params.get("name"))
    if impl is None:
        return False  # an unknown scheme: its job fails with the message
    if num_layers is None:
        return impl.is_baseline(params)
    try:
        return resolve_scheme(params, num_layers).is_baseline
    except ReinitlabError:
        return False  # an invalid scheme: its job fails with the message; not a baseline


def chunks(jobs: list[list[str]], size: int | None) -> list[list[list[str]]]:
    """Launch batches of `size` jobs (all at once when `size` is unset)."""
    size = size if size and size > 0 else max(len(jobs), 1)
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def job_problem(cfg: DictConfig) -> str | None:
    """What is wrong with one composed job (the checks the job itself runs before loading
    weights, then the content of its data files), None when nothing is."""
    from reinitlab.data.content import check_job_data
    from reinitlab.errors import ReinitlabError
    from reinitlab.job import check_job

    with open_dict(cfg):  # (the job's own copy: the sweeper composes one per job)
        # The job's output dir exists only once Hydra runs it (`${hydra:runtime.output_dir}`);
        # nothing checked here writes there, but the trainer node interpolates it.
        cfg.paths.output_dir = str(Path(cfg.hydra.sweep.dir) / "unlaunched")
    try:
        spec = check_job(cfg)
        check_job_data((spec.task, *(s.task for s in spec.chain.stages)), cfg.data)
    except ReinitlabError as e:
        return str(e)
    return None


def refuse_invalid(
    jobs: list[dict[str, Any]], total: int, problem_of: Callable[[dict], str | None]
) -> None:
    """Refuse the whole sweep when any job is invalid (`problem_of` says why), listing each
    with its reason; a reason shared by several jobs (a model that cannot be loaded, a missing
    data folder) once."""
    from reinitlab.errors import ReinitlabError

    by_reason: dict[str, list[str]] = {}
    progress = Progress("checking", len(jobs))
    for i, job in enumerate(jobs, 1):
        progress(i)
        problem = problem_of(job)
        if problem is not None:
            by_reason.setdefault(problem, []).append(job["label"])
    if not by_reason:
        return
    invalid = sum(len(v) for v in by_reason.values())
    lines = [
        f"the sweep is refused: {invalid} of {total} jobs are invalid, so none was launched. "
        "Fix the options below and run the same command again:"
    ]
    for reason, labels in by_reason.items():
        if len(labels) == 1:
            lines.append(f"  {labels[0]}: {reason}")
        else:
            shown = "; ".join(labels[:3]) + ("; ..." if len(labels) > 3 else "")
            lines.append(f"  {len(labels)} jobs ({shown}): {reason}")
    raise ReinitlabError("\n".join(lines))


def dry_run_lines(planned: list[dict[str, Any]], to_run: list[dict[str, Any]],
                  dirs: dict[str, str], state: dict[str, str]) -> Iterator[str]:  # fmt: skip
    """The dry run's listing line by line (printed as it goes: ten thousand jobs stream)."""
    run = {j["job_key"] for j in to_run}
    yield f"[reinitlab] dry run: {len(run)} of {len(planned)} jobs would run"
    for i, job in enumerate(planned, 1):
        key = job["job_key"]
        what = "run" if key in run else state.get(key, "skip")
        added = "  (baseline added)" if job["baseline_added"] else ""
        yield f"  {i:>3}  {dirs[key]:<12} {what:<9} {job['label']}{added}"


class ReinitlabSweeper(Sweeper):
    """Hydra's basic sweep (cartesian product of the swept values) with the study's baselines
    added, every job pinned to its ledger directory, and the ledger's skip and error rules."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        add_baselines: bool = True,
        skip_completed: bool = True,
        dry_run: bool = False,
        validate: bool = True,
        seeds: str = "fixed",
        adaptive: dict[str, Any] | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.seeds = seeds
        self.adaptive = dict(adaptive or {})
        self.params = dict(params or {})
        self.add_baselines = add_baselines
        self.skip_completed = skip_completed
        self.dry_run = dry_run
        self.validate = validate
        self._layers = _LayerCounts()
        self.labels: list[str] = []  # of the jobs to run, in launch order
        self.keys: list[str] = []  # every job of this command, in plan order
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self.composer: JobComposer | None = None
        self._checked: dict[tuple, str | None] = {}  # job_problem per seed-free job
        self._baselines: dict[tuple, bool] = {}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        """Keep Hydra's context and instantiate the launcher the jobs go to."""
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.composer = JobComposer(hydra_context.config_loader, config)
        if hasattr(self.launcher, "composer"):  # reinitlab's launchers (local, gpus, slurm)
            self.launcher.composer = self.composer  # jobs are not composed from scratch again

    def _describe(self, overrides: list[str]) -> dict[str, Any]:
        """A job's key, group, label, ... from its identity: set leaf by leaf on its base's
        when the composer can (no config composed per job), else from its composed config."""
        from reinitlab.sweep.jobkey import config_hash, identity_config

        assert self.composer is not None
        fast = self.composer.fast_identity(list(overrides))
        cfg = None
        if fast is None:
            cfg = self.composer.compose(list(overrides))
            identity, base = identity_config(cfg), cfg
        else:
            identity, base = fast
        num_layers = self._layers(base.model)
        reinit = identity["reinit"]
        task, variant = str(identity["task"]["name"]), scheme_text(reinit, num_layers)
        return {
            "overrides": list(overrides),
            "job_key": config_hash(identity),
            # (what identity_config(cfg, drop=("reinit",)) gives, without resolving it again)
            "group": config_hash({k: v for k, v in identity.items() if k != "reinit"}),
            "baseline": self._is_baseline(reinit, num_layers),
            "label": f"{task} {variant} seed {identity.get('seed')}",
            "task": task,
            "seed": identity.get("seed"),
            "variant": variant,
            "cache_dir": base.data.get("cache_dir") if "data" in base else None,
            "cfg": cfg,  # composed when needed (validation), else None
        }

    def _is_baseline(self, reinit: dict[str, Any], num_layers: int | None) -> bool:
        """`is_baseline`, once per distinct scheme and layer count."""
        import json

        key = (json.dumps(reinit, sort_keys=True, default=str), num_layers)
        if key not in self._baselines:
            self._baselines[key] = is_baseline(reinit, num_layers)
        return self._baselines[key]

    def problem(self, job: dict[str, Any]) -> str | None:
        """`job_problem` of a job, checked once per job that differs only in `seed`: the seed
        enters the job check through `check_seed` alone (see `check_job`), so the other seeds
        of a valid job need only that. A job found invalid is checked in full, each."""
        from reinitlab.errors import ReinitlabError
        from reinitlab.training.options import check_seed

        assert self.composer is not None
        split = self.composer.split(job["overrides"])
        if split is None:
            return job_problem(job["cfg"] or self.composer.compose(job["overrides"]))
        structural, values = split
        key = (structural, tuple(str(o.input_line) for o in values if o.key_or_group != "seed"))
        if key not in self._checked:
            cfg = job["cfg"] or self.composer.compose(job["overrides"])
            self._checked[key] = job_problem(cfg)
            return self._checked[key]
        if self._checked[key] is not None:
            return job_problem(job["cfg"] or self.composer.compose(job["overrides"]))
        try:
            check_seed(job["seed"])
        except ReinitlabError as e:
            return str(e)
        return None

    def plan(self, jobs: list[list[str]]) -> list[dict[str, Any]]:
        """The jobs to run: the user's (exact duplicates dropped) then the missing baselines."""
        planned: list[dict[str, Any]] = []
        seen: set[str] = set()
        progress = Progress("composing", len(jobs))
        for i, overrides in enumerate(jobs, 1):
            progress(i)
            job = self._describe(overrides)
            if job["job_key"] not in seen:
                seen.add(job["job_key"])
                planned.append({**job, "baseline_added": False})
        if self.add_baselines:
            covered = {j["group"] for j in planned if j["baseline"]}
            for job in list(planned):
                if job["group"] in covered:
                    continue
                base = self._describe(baseline_overrides(job["overrides"]))
                covered.add(job["group"])
                if base["job_key"] not in seen:
                    seen.add(base["job_key"])
                    planned.append({**base, "baseline_added": True})
        return planned

    def batches(self, overrides: list[Override]) -> list[list[list[str]]]:
        """The jobs left to run, each pinned to its ledger directory, in launch batches;
        nothing at all when a job is invalid (the sweep is refused) or on a dry run."""
        return self.launch_plan(self.plan(expand(overrides)))

    def launch_plan(self, planned: list[dict[str, Any]]) -> list[list[list[str]]]:
        """`batches` for jobs already planned (adaptive seeds plan each stage itself)."""
        from reinitlab.sweep.ledger import (
            Ledger,
            check_writable,
            merged_plan,
            read_plan,
            write_plan,
        )

        assert self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        state = {j.key: j.state for j in Ledger(sweep_dir).jobs} if sweep_dir.is_dir() else {}
        done = [j for j in planned if state.get(j["job_key"]) == "completed"]
        running = [j for j in planned if state.get(j["job_key"]) == "running"]
        to_run = [j for j in planned if j not in done and j not in running]
        if not self.skip_completed:
            to_run = planned
        if self.validate:
            refuse_invalid(to_run, len(planned), self.problem)
        added = sum(j["baseline_added"] for j in planned)
        added_text = f" ({added} baselines added)" if added else ""  # adaptive plans name theirs
        print(
            f"[reinitlab] sweep {sweep_dir}: {len(planned)} jobs{added_text}; "
            f"{len(done)} already completed, {len(running)} running elsewhere, "
            f"{len(to_run)} to run",
            flush=True,
        )
        self.keys = [j["job_key"] for j in planned]
        if self.dry_run:
            previous = read_plan(sweep_dir) if sweep_dir.is_dir() else None
            dirs = {p.job_key: p.dirname for p in merged_plan(previous or [], planned)}
            for line in dry_run_lines(planned, to_run, dirs, state):
                print(line, flush=True)
            return []
        cache_dirs = {j["cache_dir"] for j in planned if j["cache_dir"]}
        for cache_dir in sorted(cache_dirs):
            check_writable(Path(cache_dir), "data.cache_dir (or $REINITLAB_CACHE_DIR)")
        plan = {p.job_key: p for p in write_plan(sweep_dir, planned)}
        if not to_run and len(done) == len(planned):
            print(f"[reinitlab] all {len(planned)} jobs are complete; nothing to run", flush=True)
        self.labels = [j["label"] for j in to_run]
        pinned = [
            [*j["overrides"], f"hydra.sweep.subdir='{plan[j['job_key']].dirname}'"] for j in to_run
        ]
        if not pinned:
            return []
        size = self.max_batch_size
        if isinstance(self.launcher, LocalLauncher):
            size = 1  # one job at a time anyway: progress lines, stop on a full disk
        return chunks(pinned, size)

    def sweep(self, arguments: list[str]) -> Any:
        """Hydra's basic sweep loop, with the ledger's error handling: a bad plan or an
        unwritable directory is one message (exit 2); a full disk stops the sweep; failed jobs
        are counted at the end (exit 1) instead of raising the first one's traceback."""
        from reinitlab.errors import ReinitlabError
        from reinitlab.sweep.job import stop_code, stopped_sweep_line

        try:
            return self._sweep(arguments)
        except ReinitlabError as e:
            print(f"reinitlab: error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        except BaseException as e:  # Ctrl-C, SIGTERM: one line, not the training's traceback
            code = stop_code(e)
            if code is None:
                raise
            assert self.config is not None
            line = stopped_sweep_line(Path(self.config.hydra.sweep.dir), code)
            print(f"reinitlab: {line}", file=sys.stderr, flush=True)
            raise SystemExit(code) from None

    def _sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        params_conf = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(params_conf)
        if self.seeds not in ("fixed", "adaptive"):
            from reinitlab.errors import ReinitlabError

            raise ReinitlabError(
                f"hydra.sweeper.seeds={self.seeds!r} is not a seeds policy: use fixed (the "
                "seeds given, the default) or adaptive (seeds added in stages where a "
                "comparison with the baseline is undecided)"
            )
        if self.seeds == "adaptive":
            from hydra_plugins.reinitlab_plugins.adaptive_seeds import run_adaptive

            return run_adaptive(self, overrides)
        batches = self.batches(overrides)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        if self.dry_run:
            print("[reinitlab] dry run: nothing was launched or written", flush=True)
            return []
        returns, failed, total = self.run_batches(batches)
        self.print_summary(sweep_dir)
        self.exit_on_failures(failed, total)
        return returns

    def run_batches(self, batches: list[list[list[str]]]) -> tuple[list, list, int]:
        """Launch the batches in order: (Hydra's returns, the failed jobs, how many ran);
        a full disk stops them with one message."""
        from reinitlab.sweep.ledger import DiskFullError, disk_full, writable_error

        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        except OSError as e:
            raise writable_error(sweep_dir / "multirun.yaml", e, "hydra.sweep.dir") from None
        total = sum(len(b) for b in batches)
        returns, failed, idx = [], [], 0
        for batch in batches:
            if len(batch) == 1 and total > 1:
                print(f"[reinitlab] job {idx + 1}/{total}: {self.labels[idx]}", flush=True)
            try:
                results = self.launcher.launch(batch, initial_job_idx=idx)
            except OSError as e:
                if disk_full(e):
                    raise DiskFullError(
                        f"no space left on the device while starting job {idx + 1}/{total} in "
                        f"{sweep_dir} ({e}); free space, then run the same command again: "
                        "completed jobs are kept"
                    ) from None
                raise
            idx += len(batch)
            returns.append(results)
            for r in results:
                if r.status == JobStatus.FAILED:
                    failed.append(r)
                    if disk_full(r._return_value):
                        raise DiskFullError(
                            f"{r._return_value}. The sweep stopped after job {idx}/{total}"
                        )
        return returns, failed, total

    def exit_on_failures(self, failed: list, total: int) -> None:
        """One line naming how many jobs failed and exit 1, when any did."""
        assert self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        if failed:
            print(
                f"[reinitlab] {len(failed)} of {total} jobs failed; `reinitlab status "
                f"{shlex.quote(str(sweep_dir))}` lists them with their errors, and running the same command "
                "again re-runs only the failed and missing jobs",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)

    def print_summary(self, sweep_dir: Path) -> None:
        """The sweep's results table (every job of this command, from the ledger), where they
        are and the command that turns them into the report."""
        from reinitlab.sweep.ledger import Ledger
        from reinitlab.sweep.status import results_table

        print(f"\n[reinitlab] results ({sweep_dir}):", flush=True)
        print(results_table(Ledger(sweep_dir), self.keys), flush=True)
        where = shlex.quote(str(sweep_dir))
        print(
            f"[reinitlab] report: reinitlab report {where}   (or: make report SWEEP={where})",
            flush=True,
        )


def scheme_text(reinit: dict[str, Any], num_layers: int | None) -> str:
    """`k=3`: the scheme's label, from its resolved parameters. A scheme invalid for the model
    (the sweep is then refused, naming these labels), or for a model whose layer count is
    unknown, is labelled as for a model deeper than any value given, so `k=9` still reads
    `k=9`; one that would then read as the untouched model (`k=0`) reads as what was asked."""
    from reinitlab.reinit import SCHEMES, resolve_scheme, scheme_label

    params = dict(reinit)
    name = params.pop("name", None)
    try:
        resolve_scheme({"name": name, **params}, num_layers or 10**6)
        valid = True
    except Exception:  # noqa: BLE001 -- an invalid scheme is refused by the job checks
        valid = False
    try:
        label = scheme_label(name, params, num_layers if valid and num_layers else 10**6)
        if not valid and label in ("baseline", "pooler"):
            raise ValueError(label)  # never name an invalid job as what it is not
    except Exception:  # noqa: BLE001
        impl = SCHEMES.get(name)
        shown = impl.position if impl is not None and impl.position else tuple(params)
        label = f"{name} " + " ".join(
            f"{k}={params.get(k)}" for k in shown if params.get(k) is not None
        )
    return label
