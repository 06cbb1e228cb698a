"""What a job prints: its own lines, its progress bar and its errors -- not the libraries' chatter.

A 300-job sweep's console is read by a person looking for the one line that matters. Lightning
prints GPU/TPU availability and a product tip per job, transformers a weight-loading bar, W&B
~30 lines of run summary, and the progress bar shows `v_num` and counts epochs from 0 while
reinitlab's summary line counts from 1. `verbose=true` brings all of it back, and the job's log
file (Hydra's, in the job directory) keeps the libraries' log lines either way.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

# Library loggers whose INFO lines say nothing a researcher acts on.
CHATTY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "matplotlib")
# Warnings that are expected here: data is tokenized in memory (no loader workers needed),
# Spearman keeps the dev predictions (a dev set is small), a deprecation inside Lightning,
# Lightning's logging interval, which a short epoch undercuts, and Lightning's hint to use
# `srun` on a machine with SLURM installed (reinitlab's slurm launcher submits through
# submitit; a job started by hand on a login node is meant to run there).
EXPECTED_WARNINGS = (
    ".*does not have many workers.*",
    ".*will save all targets and predictions in the buffer.*",
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*is smaller than the logging interval.*",
    ".*The `srun` command is available on your system but is not used.*",
)


def route_lightning_logs_to_hydra() -> None:
    """Lightning adds its own console handler; under Hydra (which logs to console and the job's
    log file) that prints every line twice. Drop it and let records propagate to Hydra's."""
    import lightning  # noqa: F401  (installs the handlers we remove)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            lg.removeHandler(handler)
        lg.propagate = True


def console_filter(record: logging.LogRecord) -> bool:
    """Whether a log line goes to the console: not the libraries' INFO chatter."""
    chatty = any(record.name == n or record.name.startswith(f"{n}.") for n in CHATTY_LOGGERS)
    return not chatty or record.levelno >= logging.WARNING


def quiet_console(verbose: bool = False) -> None:
    """Keep the console to reinitlab's lines and real warnings, unless `verbose`."""
    route_lightning_logs_to_hydra()
    for pattern in EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    if verbose:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.addFilter(console_filter)  # the job's log file keeps every line
    os.environ.setdefault("WANDB_SILENT", "true")
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    disable_progress_bars()


def epoch_description(current_epoch: int, max_epochs: int | None) -> str:
    """`Epoch 1/3` for Lightning's epoch 0 of 3: counted from 1, as the console's lines are."""
    text = f"Epoch {current_epoch + 1}"
    return text + (f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else "")


def progress_bar_visible() -> bool:
    """Whether to draw a progress bar: on a terminal or in a notebook, as rich decides (its
    `TTY_COMPATIBLE=1` forces one). Written to a file (a sweep's log under `nohup`, SLURM's
    output file) rich prints just its last frame, plus a stray row of the hidden validation bar
    wrapped over lines that look blank, after which the job's own summary line says the same
    (metric, best epoch, time)."""
    try:
        from rich.console import Console
    except ImportError:  # Lightning's tqdm bar then
        return sys.stdout.isatty()
    console = Console()
    return console.is_terminal or console.is_jupyter


def epoch_progress_bar() -> Any:
    """Lightning's progress bar (rich when installed), counting epochs from 1 as every other
    reinitlab line does, and without the logger's version number."""
    import importlib.util

    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    base = RichProgressBar if importlib.util.find_spec("rich") else TQDMProgressBar

    class EpochProgressBar(base):
        def get_metrics(self, trainer, pl_module):
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            return metrics

        def on_train_epoch_start(self, trainer, *args):
            super().on_train_epoch_start(trainer, *args)
            description = epoch_description(trainer.current_epoch, trainer.max_epochs)
            if isinstance(self, TQDMProgressBar):
                self.train_progress_bar.set_description(description)
            elif self.progress is not None and self.train_progress_bar_id is not None:
                self.progress.update(self.train_progress_bar_id, description=description)

        # Lightning's rich bar draws its own 0-based description ("Epoch 0/2") when an epoch
        # starts, before the hook above can replace it: give it ours from the start.
        def _get_train_description(self, current_epoch: int) -> str:
            return epoch_description(current_epoch, self.trainer.max_epochs)

        def _init_progress(self, trainer) -> None:
            super()._init_progress(trainer)
            metrics = getattr(self, "_metric_component", None)
            if metrics is not None:
                # one line: metrics that do not fit are cut (…), never wrapped onto a line of
                # their own (a negative value's extra character used to tip it over)
                from rich.table import Column

                metrics._table_column = Column(no_wrap=True, overflow="ellipsis")

    return EpochProgressBar()


__all__ = [
    "console_filter",
    "epoch_progress_bar",
    "progress_bar_visible",
    "quiet_console",
    "route_lightning_logs_to_hydra",
]
