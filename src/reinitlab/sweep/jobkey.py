"""A job's identity: a hash of its resolved config minus where it writes and how it logs.

Re-running a sweep must recognise a job it already ran even when the job got another number
or directory, so identity is the config, not the job number. Output paths, the logger, data
locations/caches, site settings and the resume policy do not change what is computed, so they
are left out: moving the data or switching W&B to CSV does not re-run finished jobs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

# Dotted keys that do not change a job's result.
EXCLUDED_KEYS = (
    "hydra",
    "paths",
    "logger",
    "local",
    "resume",
    "study",  # a name for the runs, not part of what they compute
    "task.label_range",  # a check on the input, not part of what is computed
    "data.cache_dir",
    "chain.cache_dir",
    "data.glue_dir",
    "data.squad_dir",
    "data.num_workers",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "verbose",
    "sweep",
)
# Options whose value here means "not set": dropped so that adding them to the config (with
# that default) keeps the keys of jobs run before, and their sweeps are not re-run.
UNSET_DEFAULTS = {"trainer.max_steps": -1}


def identity_config(cfg: DictConfig, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The resolved config that defines the job (EXCLUDED_KEYS and `drop` removed first, so
    paths that only resolve inside a running job are never resolved)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for dotted in (*EXCLUDED_KEYS, *drop):
            *parents, leaf = dotted.split(".")
            node = OmegaConf.select(cfg, ".".join(parents)) if parents else cfg
            if isinstance(node, DictConfig) and leaf in node:
                del node[leaf]
        for dotted, unset in UNSET_DEFAULTS.items():
            *parents, leaf = dotted.split(".")
            node = OmegaConf.select(cfg, ".".join(parents))
            if isinstance(node, DictConfig) and node.get(leaf) == unset:
                del node[leaf]
    return OmegaConf.to_container(cfg, resolve=True)


def config_hash(container: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of a canonical (sorted-key) JSON dump."""
    data = json.dumps(container, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def job_key(cfg: DictConfig) -> str:
    """16 hex digits naming the job's config; equal configs give equal keys."""
    return config_hash(identity_config(cfg))
