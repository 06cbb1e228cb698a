"""Config dataclasses of reinitlab's Hydra launchers, registered in Hydra's ConfigStore so
`hydra/launcher=gpus` resolves in any Hydra app (Hydra's launcher test suites run it too).

No `from __future__ import annotations` here: Hydra imports plugin modules without entering
them in sys.modules, and dataclasses cannot resolve string annotations then.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class GpuPoolLauncherConf:
    """`hydra/launcher=gpus`: len(gpus) x jobs_per_gpu jobs at once on this machine, each
    pinned to its own GPU slot (lock files; a crashed job frees its slot)."""

    _target_: str = "hydra_plugins.reinitlab_plugins.gpu_launcher.GpuPoolLauncher"
    # None = every visible GPU (CUDA_VISIBLE_DEVICES, else all); or a list like [0, 2]
    gpus: list[str] | None = None
    # pack several small jobs on one GPU (each still in its own process)
    jobs_per_gpu: int = 1
    # machine-wide pool directory (None: $REINITLAB_GPU_LOCK_DIR or /tmp/reinitlab-gpu-locks)
    lock_dir: str | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="gpus", node=GpuPoolLauncherConf, provider="reinitlab"
)


@dataclass
class StackedLauncherConf:
    """`hydra/launcher=stacked`: jobs that differ only in `reinit` trained together in this
    process, their weights stacked (one forward/backward for all); the rest one by one."""

    _target_: str = "hydra_plugins.reinitlab_plugins.stacked_launcher.StackedLauncher"
    # the most jobs in one stack (a group with more is cut into stacks as equal as can be)
    members: int = 8
    # attention inside a stack: eager batches its matmuls across members; sdpa runs the fused
    # kernel once per member where torch has no batching rule for it (CPU flash attention)
    attention: str = "eager"
    # memory one stack may use, GiB; null = 90% of what is free (GPU memory on CUDA, RAM on CPU).
    # A stack that would need more is cut into smaller ones; if two members do not fit, solo.
    memory_gb: float | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="reinitlab"
)


try:  # the SLURM launcher's options: submitit's, plus how many sweep jobs one array task runs
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:  # hydra-submitit-launcher not installed: no hydra/launcher=slurm
    SlurmQueueConf = None

if SlurmQueueConf is not None:

    @dataclass
    class ReinitlabSlurmConf(SlurmQueueConf):
        """`hydra/launcher=slurm`: submitit's SLURM array; `jobs_per_task` sweep jobs run one
        after another in each array task's process (short jobs then pay one process start
        between them, not one each); every job still claims and records itself in the ledger."""

        _target_: str = "hydra_plugins.reinitlab_plugins.slurm_launcher.ReinitlabSlurmLauncher"
        jobs_per_task: int = 1

    ConfigStore.instance().store(
        group="hydra/launcher",
        name="reinitlab_slurm_base",
        node=ReinitlabSlurmConf,
        provider="reinitlab",
    )
