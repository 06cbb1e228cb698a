"""Hidden-state variability per layer (Xie et al.; the NC1 statistic of Papyan et al.).

    NC = (1/K) · tr(Σ_W Σ_B⁺)

with K classes, class means μ_k, the global mean μ_G (over all examples),
Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ   (within-class covariance) and
Σ_B = (1/K) Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ          (between-class covariance).
Low NC: the classes are already tight and far apart in that layer — the layer is specialised
for the task. NC does not change when the features are scaled.

Σ_B has rank ≤ K−1, so its pseudo-inverse is taken on its range only, from the SVD of the
centred class means (no d×d inverse, no tolerance guess on near-zero eigenvalues).

STS-B (a regression) is binned into classes first: `bin_regression_labels` uses 5 bins of
width 1 on [0, 5] (score s → class min(⌊s⌋, 4), so 5.0 falls in the top bin [4, 5]).
Caveat: in a layer that encodes the score linearly, the bin means lie (nearly) on one line;
Σ_B⁺ then gives full weight to the small between-bin spread off that line, which is mostly
sampling noise, so STS-B's NC is inflated (in our synthetic test a perfectly linear layer
scores about half the noise layers, where a classification layer scores far below 1/10).
Compare STS-B NC across layers and models, not with other tasks' values.
"""

from __future__ import annotations

import numpy as np

from reinitlab.errors import ReinitlabError

STSB_BIN_EDGES = (1.0, 2.0, 3.0, 4.0)  # bins [0,1) [1,2) [2,3) [3,4) [4,5]


def bin_regression_labels(scores, edges=STSB_BIN_EDGES) -> np.ndarray:
    """Class index of each score: the number of edges ≤ score (5 bins of width 1 for STS-B)."""
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(scores, float), side="right")


def _class_means(features, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features as float64 [N, d], class means [K, d], class index of each example)."""
    h = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if h.ndim != 2 or len(h) != len(y):
        raise ReinitlabError(f"features must be [N, d] with N labels; got {h.shape} and {y.shape}")
    classes, index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ReinitlabError("the variability score needs at least two classes in the labels")
    means = np.stack([h[index == c].mean(axis=0) for c in range(len(classes))])
    return h, means, index


def class_covariances(features, labels) -> tuple[np.ndarray, np.ndarray, int]:
    """(Σ_W, Σ_B, K) as defined in the module docstring, in float64."""
    h, means, index = _class_means(features, labels)
    within = h - means[index]
    centred = means - h.mean(axis=0)
    return within.T @ within / len(h), centred.T @ centred / len(means), len(means)


def nc_variability(features, labels, rtol: float = 1e-10) -> float:
    """NC = (1/K)·tr(Σ_W Σ_B⁺) of features [N, d] with class labels [N]."""
    h, means, index = _class_means(features, labels)
    k = len(means)
    within = h - means[index]
    centred = (means - h.mean(axis=0)) / np.sqrt(k)  # Σ_B = centredᵀ centred
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    keep = s > rtol * max(s.max(), np.finfo(float).tiny)
    if not keep.any():
        return float("inf")  # every class mean is the same: no between-class spread at all
    # Σ_B⁺ = Σ_j v_j v_jᵀ / s_j² over the range of Σ_B, so
    # tr(Σ_W Σ_B⁺) = Σ_j v_jᵀ Σ_W v_j / s_j² = Σ_j ‖within · v_j‖² / (N s_j²)
    proj = within @ vt[keep].T  # [N, r]
    return float(((proj**2).sum(axis=0) / len(h)) @ (1.0 / s[keep] ** 2) / k)


def layer_variability(features_per_layer, labels, regression: bool = False) -> list[float]:
    """NC of every layer (features_per_layer: [layers, N, d]); regression labels are binned."""
    y = bin_regression_labels(labels) if regression else np.asarray(labels)
    return [nc_variability(f, y) for f in features_per_layer]
