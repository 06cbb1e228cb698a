"""The Hydra entry point: one fine-tuning job (a reinit scheme + a GLUE task), or a sweep with -m.

`train(cfg)` does the work and returns the result record, so tests and notebooks can call it
with a composed config; `main()` is the console script `reinitlab-train` (and `train.py`).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from reinitlab.errors import ReinitlabError
from reinitlab.paths import config_dir

log = logging.getLogger("reinitlab")


def train(cfg: DictConfig, extra_callbacks: list | tuple = ()) -> dict[str, Any]:
    """Run one job; write `<output_dir>/result.json` and return the record.

    `extra_callbacks` (Lightning callbacks) are added to the job's own, e.g. by benchmarks."""
    from reinitlab.chain import run_chain
    from reinitlab.job import build_job
    from reinitlab.training.record import build_record, summary_line, write_result

    started = time.time()
    job = build_job(cfg, extra_callbacks)  # validates everything before the weights load
    try:
        job.log_hyperparams()
        spec = job.spec
        stages = run_chain(cfg, spec.chain, job.model, job.reinit_cb, spec.seeds, job.logger)
        job.trainer.fit(job.module, datamodule=job.data, **job.resume.fit_kwargs())
    finally:
        job.close_logger()
    record = build_record(job, stages, started)
    path = write_result(Path(cfg.paths.output_dir), record)
    job.resume.finish()
    print(summary_line(record, path), flush=True)
    return record


def remove_refused_run_dir(output_dir: Path) -> None:
    """Remove the folder Hydra made for a refused single run (its config copy and log, nothing
    else: a folder holding anything more is left alone), and the `outputs/<date>` folders
    above it that this leaves empty, up to the working directory."""
    import shutil

    if not output_dir.is_dir() or {p.name for p in output_dir.iterdir()} - {".hydra", "train.log"}:
        return
    shutil.rmtree(output_dir)
    cwd = Path.cwd().resolve()
    for folder in output_dir.resolve().parents:
        if folder == cwd or cwd not in folder.parents:
            break
        try:
            folder.rmdir()  # only when empty
        except OSError:
            break


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from reinitlab.sweep.job import run_tracked
    from reinitlab.training.console import quiet_console

    quiet_console(verbose=bool(cfg.get("verbose")))
    if HydraConfig.get().mode == RunMode.RUN:
        from reinitlab.job import check_job

        try:
            check_job(cfg)  # a refused single run trains nothing and leaves nothing behind
        except ReinitlabError as e:
            remove_refused_run_dir(Path(HydraConfig.get().runtime.output_dir))
            print(f"reinitlab: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    try:
        record = run_tracked(cfg, train)
    except ReinitlabError as e:  # logged once by run_tracked (console: multirun only)
        if HydraConfig.get().mode == RunMode.RUN:
            print(f"reinitlab: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        raise  # multirun: this job fails, the others still run, the sweep exits non-zero
    return None if record is None else record["best"]["metrics"]["val/primary"]


def main() -> None:
    """Entry point of `reinitlab-train`: the Hydra app. Ctrl-C exits 130 and SIGTERM 143 with
    no traceback: a stopped job said one line when it recorded itself, a stopped sweep one
    line for all (`stop_code`); the details are in the jobs' logs."""
    from reinitlab.sweep.job import stop_code
    from reinitlab.sweep.ledger import INTERRUPTED, Terminated

    try:
        _hydra_main()
    except (KeyboardInterrupt, SystemExit, Terminated) as e:
        code = stop_code(e)
        if code is None:
            raise
        if code == 130 and not INTERRUPTED.is_set():  # before any job recorded itself
            print("reinitlab: interrupted (Ctrl-C); no job was started", file=sys.stderr)
        raise SystemExit(code) from None


if __name__ == "__main__":
    main()
