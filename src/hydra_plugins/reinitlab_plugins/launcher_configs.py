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
