"""Compose a sweep's job configs in time proportional to its distinct choices, not its jobs.

Hydra's `load_sweep_config` rebuilds every job's config from its defaults tree; a study of ten
thousand jobs that differ only in `seed` and `reinit.k` pays for ten thousand identical
defaults trees. Here each job's overrides are split in two:

* structural ones -- config group choices (`task=rte`, `model=tiny`), `+`/`++`/`~` forms,
  package overrides (`x@y=...`), `hydra.*` keys other than the sweep's own dir/subdir -- are
  composed by Hydra itself, once per distinct list of them (the job's "base");
* plain value overrides (`seed=3`, `reinit.k=2`, `optim.lr=1e-5`, `hydra.sweep.subdir=...`)
  are applied to a copy of the base exactly as Hydra applies them after composing (its
  `OmegaConf.update(cfg, key, value, merge=True)`), and the hydra node's records of the
  overrides (`hydra.overrides`, `hydra.job.override_dirname`) are set as Hydra sets them.

Anything that cannot be merged exactly goes to Hydra whole: a value override that touches a
key a structural one also touches, a key that names a config group, a value Hydra refuses
(its own error message then). The first job of each base is also composed by Hydra and
compared; a base whose merge differs is composed by Hydra for every job from then on.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

MERGEABLE_HYDRA = ("hydra.sweep.",)  # hydra keys that only say where a job writes


class _Base:
    """One composed defaults list: Hydra's config for the structural overrides alone. (A plain
    class: Hydra's plugin scan imports this module outside sys.modules, where dataclasses
    cannot be built.)"""

    def __init__(self, cfg: DictConfig | None) -> None:
        self.cfg = cfg  # None: this base is composed by Hydra for every job
        self.verified = False
        self.identity: dict[str, Any] | None = None  # identity_config(cfg), once
        self.refs: list[str] = []  # the interpolations outside the hydra node
        self.fast: bool | None = None  # whether identities may be set leaf by leaf


def interpolations(cfg: DictConfig) -> list[str]:
    """Every string value holding an interpolation, outside the hydra node."""
    found, stack = [], [OmegaConf.to_container(cfg, resolve=False)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(v for k, v in node.items() if k != "hydra")
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and "${" in node:
            found.append(node)
    return found


def _referenced(key: str, refs: list[str]) -> bool:
    """Whether an interpolation may read `key` or a node above it (`${optim}` reads optim.lr)."""
    parts = key.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(re.search(rf"(?<![\w.]){re.escape(p)}(?!\w)", ref) for p in prefixes for ref in refs)


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


class JobComposer:
    """Job configs of one sweep (`compose`), and their identities (`identity`), with each
    distinct base composed by Hydra once. `hydra_compositions` counts Hydra's compositions."""

    def __init__(self, config_loader: Any, master: DictConfig) -> None:
        self.loader = config_loader
        self.master = master
        self.parser = OverridesParser.create(config_loader=config_loader)
        self.master_hydra = [str(o) for o in master.hydra.overrides.hydra]
        self.master_keys = [o.key_or_group for o in self.parser.parse_overrides(self.master_hydra)]
        self.bases: dict[tuple[str, ...], _Base] = {}
        self.hydra_compositions = 0
        self._groups: dict[str, bool] = {}
        self._parsed: dict[str, Override] = {}

    def parse(self, overrides: Sequence[str]) -> list[Override]:
        """Hydra's parse of each override, once per distinct string (a study of ten thousand
        jobs has a few dozen: `seed=0` ... `seed=9`, `reinit.k=1` ...)."""
        missing = [o for o in overrides if o not in self._parsed]
        if missing:
            for line, o in zip(missing, self.parser.parse_overrides(missing), strict=True):
                self._parsed[line] = o
        return [self._parsed[o] for o in overrides]

    # --- Hydra's own composition ----------------------------------------------------------

    def hydra_compose(self, overrides: Sequence[str]) -> DictConfig:
        """What Hydra composes for this job (the reference every merge must equal)."""
        self.hydra_compositions += 1
        return self.loader.load_sweep_config(self.master, list(overrides))

    # --- splitting ------------------------------------------------------------------------

    def _is_group(self, key: str) -> bool:
        if key not in self._groups:
            self._groups[key] = bool(self.loader.repository.group_exists(key))
        return self._groups[key]

    def _mergeable(self, o: Override) -> bool:
        if o.is_add() or o.is_force_add() or o.is_delete() or o.is_sweep_override():
            return False
        if o.package is not None or self._is_group(o.key_or_group):
            return False
        key = o.key_or_group
        return not o.is_hydra_override() or key.startswith(MERGEABLE_HYDRA)

    def split(self, overrides: Sequence[str]) -> tuple[tuple[str, ...], list[Override]] | None:
        """(the structural overrides, the parsed value overrides), None when the job must be
        composed by Hydra whole (a value override overlapping a structural one)."""
        parsed = self.parse(overrides)
        structural = [o for o in parsed if not self._mergeable(o)]
        values = [o for o in parsed if self._mergeable(o)]
        fixed = [*self.master_keys, *(o.key_or_group for o in structural)]
        if any(_overlaps(v.key_or_group, k) for v in values for k in fixed):
            return None
        return tuple(str(o.input_line) for o in structural), values

    # --- merging --------------------------------------------------------------------------

    def _base(self, structural: tuple[str, ...]) -> _Base:
        base = self.bases.get(structural)
        if base is None:
            base = _Base(self.hydra_compose(list(structural)))
            self.bases[structural] = base
        return base

    def _merge(self, base: DictConfig, overrides: Sequence[str], values: list[Override]):
        cfg = copy.deepcopy(base)
        for o in values:
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
        parsed = self.parse(overrides)
        task = [o for o in parsed if not o.is_hydra_override()]
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.hydra = self.master_hydra + [
                str(o.input_line) for o in parsed if o.is_hydra_override()
            ]
            cfg.hydra.overrides.task = [str(o.input_line) for o in task]
            cfg.hydra.job.override_dirname = override_dirname(task, cfg.hydra.job.config)
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        """The job's config, equal to Hydra's `load_sweep_config(master, overrides)`."""
        split = self.split(overrides)
        if split is None:
            return self.hydra_compose(overrides)
        structural, values = split
        base = self._base(structural)
        if base.cfg is None:
            return self.hydra_compose(overrides)
        try:
            cfg = self._merge(base.cfg, overrides, values)
        except Exception:  # noqa: BLE001 -- Hydra composes it and says what is wrong, its way
            return self.hydra_compose(overrides)
        if not base.verified:
            reference = self.hydra_compose(overrides)
            base.verified = True
            if not same_config(cfg, reference):
                log.debug("merged config differs from Hydra's for %s; composing", structural)
                base.cfg = None
                return reference
        return cfg

    def fast_identity(self, overrides: Sequence[str]) -> tuple[dict[str, Any], DictConfig] | None:
        """(the job's identity, i.e. `identity_config` of its config, and its base config)
        without composing the job: the base's identity with the job's values set leaf by
        leaf. None when the job has to be composed (`compose`) to tell. The first job of each
        base is also composed and compared; a base that differs is never taken this way."""
        from reinitlab.sweep.jobkey import identity_config

        split = self.split(overrides)
        if split is None:
            return None
        structural, values = split
        base = self._base(structural)
        if base.cfg is None or base.fast is False:
            return None
        if base.identity is None:
            base.refs = interpolations(base.cfg)
            if any("${." in ref for ref in base.refs):  # relative interpolations: not here
                base.fast = False
                return None
            base.identity = identity_config(base.cfg)
        identity = copy.deepcopy(base.identity)
        for o in values:
            if not o.is_hydra_override() and not _set_leaf(identity, o, base.refs):
                return None
        if base.fast is None:
            base.fast = identity_config(self.compose(overrides)) == identity
            if not base.fast:
                log.debug("identity set by leaves differs for %s; composing", structural)
                return None
        return identity, base.cfg


class Progress:
    """A progress line for planning and validation that take long (> `after_s`): jobs done of
    the total, rate, and the time left; every `every_s` at most, on stdout (nothing for a
    sweep planned in seconds)."""

    def __init__(self, what: str, total: int, after_s: float = 2.0, every_s: float = 2.0):
        import time

        self.what, self.total, self.after_s, self.every_s = what, total, after_s, every_s
        self.clock = time.monotonic
        self.start = self.last = self.clock()
        self.shown = False

    def __call__(self, done: int) -> None:
        now = self.clock()
        if now - self.start < self.after_s or (
            now - self.last < self.every_s and done < self.total
        ):
            return
        if done >= self.total and not self.shown:
            return  # finished before the first line was due... or just after it: say nothing
        self.last, self.shown = now, True
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        print(
            f"[reinitlab] {self.what}: {done}/{self.total} jobs ({rate:.0f}/s, about "
            f"{left:.0f} s left)",
            flush=True,
        )


def _set_leaf(identity: dict[str, Any], o: Override, refs: list[str]) -> bool:
    """Set one value override in a job's identity (a resolved container), as merging it into
    the config and resolving would; False when that cannot be told without doing so: the key
    is new, a node, read by an interpolation, left out of identities, or the value is one
    (an interpolation, a list or a dict)."""
    from reinitlab.sweep.jobkey import EXCLUDED_KEYS, UNSET_DEFAULTS

    key = o.key_or_group
    if key in UNSET_DEFAULTS or key.split(".")[0] == "model":
        return False  # (the model's layer count is read from the base's model config)
    if any(_overlaps(key, x) for x in EXCLUDED_KEYS) or _referenced(key, refs):
        return False
    value = o.value()
    plain = value is None or isinstance(value, bool | int | float)
    if not (plain or (isinstance(value, str) and "${" not in value)):
        return False
    *parents, leaf = key.split(".")
    node: Any = identity
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node or isinstance(node[leaf], dict | list):
        return False
    node[leaf] = value
    return True


def override_dirname(task: list[Override], job_config: DictConfig) -> str:
    """`hydra.job.override_dirname` as Hydra's config loader writes it: the task overrides not
    excluded, sorted, joined by item_sep, `=` replaced by kv_sep."""
    opts = job_config.override_dirname
    excluded = set(opts.exclude_keys)
    lines = sorted(str(o.input_line) for o in task if o.key_or_group not in excluded)
    return opts.item_sep.join(lines).replace("=", opts.kv_sep)


def same_config(a: DictConfig, b: DictConfig) -> bool:
    """Whether two configs hold the same values and interpolations, with the same struct flag."""
    return OmegaConf.to_container(a, resolve=False) == OmegaConf.to_container(
        b, resolve=False
    ) and OmegaConf.is_struct(a) == OmegaConf.is_struct(b)
