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
    report and the DeltaTracker's W&B image, so both draw the same picture (the report draws
    it under its house style, `report.figures.styled`)."""
    import matplotlib.pyplot as plt  # the caller chose the backend (the report: Agg)

    m = np.asarray(head, dtype=float)
    # one column (3.3 in) up to the text width (7 in) of a paper, as the report's figures
    width = min(7.0, max(3.3, 0.45 * m.shape[1] + 1.8))
    fig, ax = plt.subplots(figsize=(width, 0.3 * m.shape[0] + 1.3), layout="constrained")
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(m.shape[1]), [head_label(i + 1) for i in range(m.shape[1])])
    ax.set_yticks(range(m.shape[0]), [layer_label(i + 1) for i in range(m.shape[0])])
    ax.set_xlabel("attention head")
    ax.set_ylabel("encoder layer")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="‖θ−θ_start‖ / ‖θ_start‖")
    return fig
