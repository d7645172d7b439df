"""Dissection figures: level fractions by layer, and labelled units with their evidence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

LEVEL_COLOURS = {"l1": "#4c72b0", "l2": "#dd8452", "l3": "#55a868", "unlabelled": "#d9d9d9"}
LEVEL_LABELS = {"l1": "edges & strokes", "l2": "parts & shapes", "l3": "objects (digits)", "unlabelled": "unlabelled"}


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def plot_level_fractions(fractions: dict[str, dict[str, float]], control: dict[str, dict[str, float]] | None = None,
                         title: str = "What the units detect", ax: Axes | None = None) -> Figure:
    """Stacked bars per layer: fraction of units labelled at each level (and unlabelled).

    ``fractions``: {layer: {"l1", "l2", "l3", "unlabelled"}} in forward order; with ``control``
    (same keys, e.g. the random-init network) each layer gets a second, hatched bar.
    """
    layers = list(fractions)
    fig, ax = _figure(ax, (max(5.0, 0.9 * len(layers) + 2.5), 3.6))
    width = 0.38 if control else 0.7
    x = np.arange(len(layers))
    for offset, data, hatch, tag in ((0.0, fractions, None, "trained"), (width, control, "//", "random init")):
        if not data:
            continue
        bottom = np.zeros(len(layers))
        for level, colour in LEVEL_COLOURS.items():
            values = np.array([data[layer][level] if layer in data else np.nan for layer in layers])
            ax.bar(x + offset - (width / 2 if control else 0), values, width, bottom=bottom, color=colour,
                   hatch=hatch, edgecolor="white" if hatch is None else "#555", linewidth=0.5,
                   label=f"{LEVEL_LABELS[level]}" if tag == "trained" else None)
            bottom += np.nan_to_num(values)
    ax.set_xticks(x, layers, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of units")
    ax.set_title(title + (" (hatched: random-init control)" if control else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_unit_examples(images: torch.Tensor, unit_masks: torch.Tensor, concept_masks: torch.Tensor,
                       row_titles: Sequence[str], title: str = "", ax: Axes | None = None) -> Figure:
    """One row per unit: its top images, the unit's on-region outlined in orange, the concept's mask in cyan.

    images (U, k, H, W) (uint8 or float), masks (U, k, H, W) bool.
    """
    u, k, h, w = images.shape
    fig = Figure(figsize=(1.15 * k + 2.6, 1.2 * u + 0.5), layout="constrained") if ax is None else ax.figure
    axes = fig.subplots(u, k, squeeze=False) if ax is None else np.array([[ax]])
    for i in range(u):
        for j in range(k):
            a = axes[i, j]
            a.imshow(images[i, j].float().numpy(), cmap="gray_r", vmin=0, vmax=255 if not images.is_floating_point() else 1)
            if concept_masks[i, j].any():
                a.contour(concept_masks[i, j].float().numpy(), levels=[0.5], colors="#00bcd4", linewidths=1.0)
            if unit_masks[i, j].any():
                a.contour(unit_masks[i, j].float().numpy(), levels=[0.5], colors="#ff7f0e", linewidths=1.4)
            a.set_xticks([])
            a.set_yticks([])
            if j == 0:
                a.set_ylabel(row_titles[i], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
