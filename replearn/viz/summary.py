"""The run page's opening figure: for every layer, first to last, its strongest units at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from replearn.errors import ReplearnError
from replearn.viz.grid import DPI, as_images, rescale_each

CELL = 0.55  # inches per image
GAP = 0.04  # between the images of one unit
GROUP_GAP = 0.22  # between units
LEFT, RIGHT, TOP, BOTTOM = 1.05, 0.1, 0.45, 0.1
LABEL = 0.3  # room above each row for the unit labels


@dataclass
class SummaryRow:
    """One layer: ``examples`` (U, m, 1, h, w) top test examples and ``actmax`` (U, 1, H, W), one label per unit."""

    layer: str
    labels: Sequence[str]
    examples: torch.Tensor
    actmax: torch.Tensor


def plot_summary(rows: Sequence[SummaryRow], title: str | None = None) -> Figure:
    """One row per layer: per unit, its top examples (one grey scale per layer) then its act-max image (own scale).

    Positions are laid out in inches, so the figure's size follows the number of units and layers.
    """
    if not rows:
        raise ReplearnError("plot_summary got no layers; pass one SummaryRow per layer")
    for row in rows:
        if row.examples.dim() != 5 or len(row.actmax) != len(row.examples) or len(row.labels) != len(row.examples):
            raise ReplearnError(f"summary row {row.layer}: need examples (U, m, 1, h, w), actmax (U, 1, H, W) and U "
                                f"labels; got {tuple(row.examples.shape)}, {tuple(row.actmax.shape)}, {len(row.labels)}")
    per_unit = max(row.examples.shape[1] for row in rows) + 1
    n_units = max(len(row.examples) for row in rows)
    group = per_unit * CELL + (per_unit - 1) * GAP
    width = LEFT + n_units * group + (n_units - 1) * GROUP_GAP + RIGHT
    height = TOP + len(rows) * (CELL + LABEL) + BOTTOM
    fig = Figure(figsize=(width, height), dpi=DPI)
    if title:
        fig.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=10)
    for r, row in enumerate(rows):
        y = height - TOP - LABEL - r * (CELL + LABEL) - CELL  # bottom of this row's images, inches
        fig.text(0.12 / width, (y + CELL / 2) / height, row.layer, ha="left", va="center", fontsize=8,
                 fontweight="bold")
        crops = row.examples.detach().float().cpu()
        lo, hi = float(crops.min()), float(crops.max())
        faces = rescale_each(as_images(row.actmax))  # (U, H, W)
        for u in range(len(crops)):
            x = LEFT + u * (group + GROUP_GAP)
            images = [(crops[u, j, 0].numpy(), "gray", (lo, hi if hi > lo else lo + 1)) for j in range(crops.shape[1])]
            images.append((faces[u], "gray", (0.0, 1.0)))
            for j, (pixels, cmap, (vmin, vmax)) in enumerate(images):
                left = x + j * (CELL + GAP) + (per_unit - len(images)) * (CELL + GAP) * (j == len(images) - 1)
                ax = fig.add_axes((left / width, y / height, CELL / width, CELL / height))
                ax.imshow(np.asarray(pixels), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if j == len(images) - 1:  # the act-max image gets a coloured frame to set it apart
                    for spine in ax.spines.values():
                        spine.set_edgecolor("tab:orange")
                        spine.set_linewidth(1.5)
            fig.text(x / width, (y + CELL + 0.05) / height, row.labels[u], ha="left", va="bottom", fontsize=7)
    return fig
