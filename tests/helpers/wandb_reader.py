"""The tests' name for the `.wandb` reader (`reinitlab.report.wandb_files`)."""

from reinitlab.report.wandb_files import (  # noqa: F401
    WandbFileError,
    find_run_files,
    read_records,
    read_run,
)
