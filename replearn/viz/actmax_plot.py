"""Activation-maximization images: the input each unit responds to most (found by gradient ascent)."""

from __future__ import annotations

from typing import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from replearn.errors import ReplearnError
from replearn.viz.grid import image_grid, short_number


def plot_actmax(
    images: torch.Tensor,
    *,
    units: Sequence[int] | None = None,
    unit_names: Sequence[str] | None = None,
    objective: torch.Tensor | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Optimized inputs ``(U, 1, H, W)``, one per unit, each stretched to its own grey range.

    Each image is scaled on its own because units reach their optimum at very different input
    norms; ``objective`` (U,) adds the final activation to the label.
    """
    if images.dim() != 4:
        raise ReplearnError(f"expected act-max images of shape (U, 1, H, W), got {tuple(images.shape)}")
    u = len(images)
    index = list(range(u)) if units is None else list(units)
    if len(index) != u:
        raise ReplearnError(f"plot_actmax got {len(index)} unit indices for {u} images; pass one per image")
    names = list(unit_names) if unit_names is not None else [str(i) for i in index]
    if objective is not None:
        names = [f"{name}: {short_number(float(v))}" for name, v in zip(names, objective)]
    return image_grid(images, labels=names, scale="per_image", title=title,
                      cell_inches=0.8 if objective is not None else 0.65, ax=ax)
