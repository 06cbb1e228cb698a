"""Probe every layer of one model state: features (cached) → linear probe + variability.

`probe_model_state` is the one entry used by the `reinitlab probe` command and by training
(`probe.before` / `probe.after`, through `ProbeCallback`). Its result is a plain dict:

    {"layer_names": ["embeddings", "layer_01", ...], "metric": [...], "variability": [...],
     "metrics": [{mcc: ...}, ...], "regularisation": [...], "pooling": "mean",
     "primary_metric": "mcc", "train_size": N, "dev_size": M, "cache_hit": bool,
     "model_fingerprint": "..."}

`metric[i]` is the task's primary GLUE metric on dev of a linear probe on layer i's
features; `variability[i]` the NC score of layer i on the probe's training subset.
`model_fingerprint` keys the feature cache: weights, buffers and forward hooks (head masks
included) of the backbone; null when a hook cannot be fingerprinted (nothing is cached then).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from reinitlab.data.glue_io import subset_indices
from reinitlab.data.tasks import TaskSpec
from reinitlab.errors import ReinitlabError
from reinitlab.probing.features import cached_features, model_fingerprint
from reinitlab.probing.linear import probe_layers
from reinitlab.probing.variability import layer_variability


def subset(dataset: Dataset, n: int | None, seed: int, stratify: bool) -> Dataset:
    """A fixed random (stratified) subset of size n, or the dataset itself when n is None."""
    if n is None:
        return dataset
    idx = subset_indices(dataset.labels.tolist(), int(n), seed, stratify=stratify)
    return dataset if idx is None else Subset(dataset, idx.tolist())


def probe_model_state(
    model: nn.Module,
    task: TaskSpec,
    train_set: Dataset,
    dev_set: Dataset,
    collate,
    *,
    pooling: str = "mean",
    batch_size: int = 128,
    seed: int = 0,
    cache_dir: str | None = None,
    key_parts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Probe metric and variability for every layer of `model` (not modified)."""
    key_parts = dict(key_parts or {})
    fingerprint = model_fingerprint(model)

    def feats(split: str, ds: Dataset):
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
        return cached_features(
            model,
            loader,
            pooling,
            cache_dir,
            {"task": task.name, "split": split, **key_parts},
            model_key=fingerprint,
        )

    # fork_rng: a DataLoader draws a seed from the global RNG; probing must not change training.
    with torch.random.fork_rng(devices=[]):
        train = feats("train", train_set)
        dev = feats("dev", dev_set)
    train_x, dev_x = train.features.numpy(), dev.features.numpy()
    train_y, dev_y = train.labels.numpy(), dev.labels.numpy()
    results = probe_layers(task, train_x, train_y, dev_x, dev_y, seed=seed)
    # JSON has no infinity: NC is undefined (null) when every class mean is the same vector,
    # e.g. [CLS] of the embeddings layer, identical for every input.
    variability = [
        v if math.isfinite(v) else None
        for v in layer_variability(train_x, train_y, regression=task.is_regression)
    ]
    return {
        "layer_names": train.layer_names,
        "metric": [r.primary for r in results],
        "variability": variability,
        "metrics": [r.metrics for r in results],
        "regularisation": [r.regularisation for r in results],
        "heldout_metric": [r.heldout_primary for r in results],
        "primary_metric": task.primary_metric,
        "regulariser": "alpha" if task.is_regression else "C",
        "pooling": pooling,
        "train_size": len(train_y),
        "dev_size": len(dev_y),
        "cache_hit": bool(train.cache_hit and dev.cache_hit),
        "model_fingerprint": fingerprint,
    }


def format_table(result: Mapping[str, Any]) -> str:
    """The per-layer probe table printed to the terminal: metric, NC score (n/a when undefined)
    and the chosen regulariser, one row per layer."""
    lines = [f"{'layer':<12} {result['primary_metric']:>9} {'NC':>11} {result['regulariser']:>8}"]
    for name, m, v, r in zip(
        result["layer_names"],
        result["metric"],
        result["variability"],
        result["regularisation"],
        strict=True,
    ):
        nc = "n/a" if v is None else f"{v:.4g}"
        lines.append(f"{name:<12} {m:>9.4f} {nc:>11} {r:>8g}")
    return "\n".join(lines)


def probe_data(data, cfg_probe: Mapping[str, Any], seed: int) -> tuple[Dataset, Dataset]:
    """The probe's training subset (of the job's training subset) and dev set (primary dev)."""
    stratify = not data.task.is_regression
    train = subset(data.train_set, cfg_probe.get("max_train_samples"), seed, stratify)
    dev = subset(data.val_sets[0], cfg_probe.get("max_dev_samples"), seed, stratify)
    return train, dev


def probe_key_parts(cfg, seed: int) -> dict[str, Any]:
    """What names the split in the feature cache (the data hash inside makes it exact)."""
    return {
        "max_length": cfg.data.max_length,
        "data_subset": [cfg.data.max_train_samples, seed],
        "probe_subset": [cfg.probe.get("max_train_samples"), cfg.probe.get("max_dev_samples")],
    }


def check_probe_config(cfg_probe: Mapping[str, Any]) -> None:
    """Reject a bad `probe` config (unknown pooling, subset size under 10) before anything loads."""
    from reinitlab.probing.features import POOLINGS

    if cfg_probe.get("pooling", "mean") not in POOLINGS:
        raise ReinitlabError(
            f"probe.pooling={cfg_probe.get('pooling')!r} is not allowed; choose from {POOLINGS}"
        )
    for key in ("max_train_samples", "max_dev_samples"):
        n = cfg_probe.get(key)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 10):
            raise ReinitlabError(f"probe.{key}={n!r}: give an integer ≥ 10, or null for all")


def log_probe(loggers, stage: str, result: Mapping[str, Any], step: int) -> None:
    """Scalars `probe/<stage>/<layer>` and `probe/<stage>/variability/<layer>`; on W&B also
    per-layer line charts (metric and variability against the layer index)."""
    flat = {}
    for name, m, v in zip(
        result["layer_names"], result["metric"], result["variability"], strict=True
    ):
        flat[f"probe/{stage}/{name}"] = m
        if v is not None:
            flat[f"probe/{stage}/variability/{name}"] = v
    for lg in loggers:
        lg.log_metrics(flat, step=step)
        if "Wandb" in type(lg).__name__:
            import wandb

            rows = [
                [i, name, m, v]
                for i, (name, m, v) in enumerate(
                    zip(result["layer_names"], result["metric"], result["variability"], strict=True)
                )
            ]
            table = wandb.Table(columns=["layer", "name", "metric", "variability"], data=rows)
            lg.experiment.log(
                {
                    f"probe/{stage}/table": table,
                    f"probe/{stage}/metric_by_layer": wandb.plot.line(
                        table, "layer", "metric", title=f"probe {stage}: {result['primary_metric']}"
                    ),
                    f"probe/{stage}/variability_by_layer": wandb.plot.line(
                        table, "layer", "variability", title=f"probe {stage}: NC variability"
                    ),
                }
            )
        elif hasattr(lg, "save"):
            lg.save()


class ProbeCallback(L.Callback):
    """Probes the model as fine-tuning starts (`before`: after the reinit scheme was applied,
    so layers k..L are the fresh ones) and as it ends (`after`: the final weights)."""

    def __init__(self, cfg, data, seed: int):
        check_probe_config(cfg.probe)
        self.cfg = cfg
        self.data = data
        self.seed = seed
        self.results: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_config(cls, cfg, data, seed: int) -> ProbeCallback | None:
        """The callback, or None when the config asks for no `before` and no `after` probe."""
        probe = cfg.get("probe")
        if not probe or not (probe.get("before") or probe.get("after")):
            return None
        return cls(cfg, data, seed)

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        model = getattr(pl_module, "model", pl_module)
        train, dev = probe_data(self.data, self.cfg.probe, self.seed)
        result = probe_model_state(
            model,
            self.data.task,
            train,
            dev,
            self.data.collate,
            pooling=self.cfg.probe.get("pooling", "mean"),
            batch_size=self.cfg.data.eval_batch_size,
            seed=self.seed,
            cache_dir=self.cfg.data.cache_dir,
            key_parts=probe_key_parts(self.cfg, self.seed),
        )
        self.results[stage] = result
        print(f"[reinitlab] probe {stage} fine-tuning:\n{format_table(result)}", file=sys.stderr)
        log_probe(trainer.loggers, stage, result, step=trainer.global_step)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Probe the fit's starting weights (post-reinit: the reinit callback runs first), once per
        callback: a `before` result already taken is not probed again."""
        if self.cfg.probe.get("before") and "before" not in self.results:
            self._probe(trainer, pl_module, "before")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Probe the final weights of the fit."""
        if self.cfg.probe.get("after"):
            self._probe(trainer, pl_module, "after")
