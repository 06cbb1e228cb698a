"""Which pretrained tensors a reinit scheme resets, and how: pure PyTorch, no Lightning.

A scheme config is validated against the model's sizes (`resolve_scheme`, before weights
load), turned into a `SchemePlan` for a model (`plan_scheme`: `ResetTarget`s = parameter name +
init + optional slice; a layer order for `permute`; heads to mask), and applied (`apply_plan`;
`apply_reset` writes fresh values with `torch.nn.init`). Layers and heads are numbered 1..L
and 1..H in configs, 0-based inside. One adapter per family finds the modules
(`adapters.EncoderAdapter`: BERT/RoBERTa/ELECTRA, DistilBERT and MPNet).

Notebook use::

    plan = plan_scheme(model, {"name": "heads", "layer": 12, "head": 6})
    apply_plan(model, plan, std=model.config.initializer_range, seed=0)
"""

from reinitlab.reinit.adapters import (
    PARTS,
    SUPPORTED_MODEL_TYPES,
    EncoderAdapter,
    layout_for,
)
from reinitlab.reinit.apply import TRUNC_SIGMAS, apply_reset
from reinitlab.reinit.masking import install_head_masks, masked_heads
from reinitlab.reinit.permute import permute_layers
from reinitlab.reinit.plan import (
    SchemePlan,
    apply_plan,
    encoder_layers,
    head_targets,
    plan_reinit,
    plan_scheme,
    pooler_targets,
    progressive_targets,
    selection_targets,
)
from reinitlab.reinit.schemes import (
    MODES,
    SCHEMES,
    Scheme,
    Selection,
    check_progressive_k,
    figure_label,
    get_scheme,
    register,
    resolve_scheme,
    scheme_is_baseline,
    scheme_label,
)
from reinitlab.reinit.targets import ResetTarget, module_targets

__all__ = [
    "MODES",
    "PARTS",
    "SCHEMES",
    "SUPPORTED_MODEL_TYPES",
    "TRUNC_SIGMAS",
    "EncoderAdapter",
    "ResetTarget",
    "Scheme",
    "SchemePlan",
    "Selection",
    "apply_plan",
    "apply_reset",
    "check_progressive_k",
    "encoder_layers",
    "get_scheme",
    "head_targets",
    "install_head_masks",
    "layout_for",
    "masked_heads",
    "module_targets",
    "permute_layers",
    "plan_reinit",
    "plan_scheme",
    "pooler_targets",
    "progressive_targets",
    "register",
    "resolve_scheme",
    "figure_label",
    "scheme_is_baseline",
    "scheme_label",
    "selection_targets",
]
