"""The per-head movement heatmap, drawn the same way by the report and by `DeltaTracker`'s W&B
image, and the layer / head names both put on its axes.

It lives here, below the report, so the training-time callback can draw it without importing
the report package (which sits above training; docs/architecture.md).
"""

from __future__ import annotations

import numpy as np


def layer_label(layer: int) -> str:
    """`Layer 3` (1-based), the report's name for an encoder layer on every axis and table."""
    return f"Layer {int(layer)}"


def head_label(head: int) -> str:
    """`H6` (1-based): a head column; with its layer it reads `L12H6`, as the run labels do."""
    return f"H{int(head)}"


def head_movement_figure(head: list[list[float]], title: str):
    """Per-head relative movement as a layers x heads heatmap (1-based labels). Shared by the
    report and the DeltaTracker's W&B image, so both draw the same picture."""
    import matplotlib.pyplot as plt  # the caller chose the backend (the report: Agg)

    m = np.asarray(head, dtype=float)
    fig, ax = plt.subplots(figsize=(0.6 * m.shape[1] + 2.5, 0.5 * m.shape[0] + 1.8))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(m.shape[1]), [head_label(i + 1) for i in range(m.shape[1])])
    ax.set_yticks(range(m.shape[0]), [layer_label(i + 1) for i in range(m.shape[0])])
    ax.set_xlabel("attention head")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    return fig
