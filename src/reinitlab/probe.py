"""`reinitlab probe task=cola model=minilm-l6 [overrides...]`: probe every layer of a model.

The overrides are the training config's (Hydra syntax, composed from the same `train`
config), so `data.max_train_samples=`, `data.glue_dir=`, `probe.pooling=cls`,
`probe.max_dev_samples=` and even `reinit.k=` (probe a re-initialized state) work as in
training. By default the pretrained model is probed (reinit.k unset = nothing reset).
Writes `<output dir>/probe.json` (atomically) and prints a per-layer table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reinitlab.errors import ReinitlabError

PROBE_FILENAME = "probe.json"


def add_arguments(parser) -> None:
    """Hydra overrides (positional) and `--output-dir` of `reinitlab probe`."""
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of the training config, e.g. task=cola model=minilm-l6",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="where probe.json goes (default: outputs/probe/<task>-<model>-<time>)",
    )


def compose(overrides: list[str], output_dir: str | None = None):
    """The training config with the user's overrides, as `train.py` would compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from reinitlab.paths import config_dir

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose("train", overrides=list(overrides))
    except HydraException as e:
        raise ReinitlabError(f"bad override: {e}") from None
    finally:
        GlobalHydra.instance().clear()
    if output_dir is None:
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        output_dir = f"outputs/probe/{cfg.task.name}-{cfg.model.name}-{stamp}_${{reinitlab_uid:}}"
    OmegaConf.update(cfg, "paths.output_dir", str(output_dir), force_add=True)
    return cfg


def probe_from_config(cfg) -> dict[str, Any]:
    """Load model, tokenizer and data as training does, probe every layer, write probe.json."""
    import torch

    from reinitlab.atomic import write_json_atomic
    from reinitlab.job import check_job
    from reinitlab.probing.run import (
        check_probe_config,
        format_table,
        probe_data,
        probe_key_parts,
        probe_model_state,
    )
    from reinitlab.reinit import apply_reset, plan_reinit
    from reinitlab.training.builder import build_data, build_model, job_config
    from reinitlab.training.models import load_tokenizer
    from reinitlab.training.record import package_versions

    started = time.time()
    check_probe_config(cfg.probe)
    spec = check_job(cfg)
    if spec.task.is_qa:
        raise ReinitlabError(
            f"reinitlab probe: task={spec.task.name} is question answering; linear probes "
            "need class labels or scores (a GLUE task)"
        )
    task, seeds, params, num_layers = spec.task, spec.seeds, spec.params, spec.num_layers
    data = build_data(task, load_tokenizer(cfg.model), cfg.data, seeds)
    model = build_model(cfg.model, task, seeds)
    targets = plan_reinit(model, {"name": cfg.reinit.name, **params})
    apply_reset(model, targets, std=model.config.initializer_range, seed=seeds["reinit"])
    model.to("cuda" if torch.cuda.is_available() else "cpu")

    train, dev = probe_data(data, cfg.probe, seeds["subset"])
    result = probe_model_state(
        model,
        task,
        train,
        dev,
        data.collate,
        pooling=cfg.probe.pooling,
        batch_size=cfg.data.eval_batch_size,
        seed=seeds["subset"],
        cache_dir=cfg.data.cache_dir,
        key_parts=probe_key_parts(cfg, seeds["subset"]),
    )
    label = spec.label
    record = {
        "task": task.name,
        "model": cfg.model.name,
        "num_layers": num_layers,
        "scheme": {"name": cfg.reinit.name, "label": label, **params},
        "seed": int(cfg.seed),
        "seeds": seeds,
        **result,
        "wall_time_s": round(time.time() - started, 2),
        "versions": package_versions(),
        "config": job_config(cfg),
    }
    path = write_json_atomic(Path(cfg.paths.output_dir) / PROBE_FILENAME, record)
    print(f"[reinitlab] probe | {task.name} | {cfg.model.name} | {label} | {cfg.probe.pooling}")
    print(format_table(result))
    hit = "features from cache" if result["cache_hit"] else "features extracted"
    print(f"[reinitlab] {hit}; wrote {path}", flush=True)
    record["path"] = str(path)
    return record


def run(args) -> int:
    """`reinitlab probe`: compose the config, probe every layer, write probe.json; returns 0."""
    cfg = compose(args.overrides, args.output_dir)
    probe_from_config(cfg)
    return 0
