"""Layer-wise probing: what each frozen layer encodes for a task, next to the reinit curves.

The command around it, `reinitlab probe`, is `reinitlab.probe` (it builds a job, a layer above);
the head-on-layer training option is `reinitlab.training.head_layer`.

- `features`: per-layer [CLS] / mean-pooled features, cached per model state.
- `linear`: linear probes per layer, scored with the task's GLUE metric.
- `variability`: the NC hidden-state variability score per layer (Xie et al.).
- `correlation`: Spearman ρ between probe metric of layer ℓ and the reinit drop from ℓ.
- `run`: probe one model state end to end; the training callback (`probe.before/after`).
"""

from reinitlab.probing.correlation import probe_reinit_spearman, reinit_curve
from reinitlab.probing.variability import bin_regression_labels, nc_variability

__all__ = [
    "bin_regression_labels",
    "nc_variability",
    "probe_reinit_spearman",
    "reinit_curve",
]
