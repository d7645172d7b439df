"""Feature maps of chosen inputs: conv channels as image grids, MLP units as a heatmap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from replearn.errors import ReplearnError
from replearn.viz.grid import image_grid, new_figure


def value_style(values: torch.Tensor) -> tuple[str, tuple[float, float]]:
    """Colormap and range: sequential for non-negative activations, diverging around 0 otherwise."""
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0:
        return "magma", (0.0, hi if hi > 0 else 1.0)
    bound = max(abs(lo), abs(hi)) or 1.0
    return "RdBu_r", (-bound, bound)


def plot_feature_maps(
    maps: torch.Tensor,
    *,
    image: torch.Tensor | None = None,
    channels: Sequence[int] | None = None,
    title: str | None = None,
    limits: tuple[float, float] | None = None,
    ncols: int = 8,
    ax: Axes | None = None,
) -> Figure:
    """One input's conv activations ``(C, H, W)`` as a grid of channels (one shared colour range).

    With ``image`` (1, H0, W0) and no ``ax``, the input is drawn on the left for reference.
    """
    if maps.dim() != 3:
        raise ReplearnError(f"expected one input's feature maps (C, H, W), got {tuple(maps.shape)}")
    index = list(range(maps.shape[0])) if channels is None else list(channels)
    chosen = maps[index].detach().cpu()
    cmap, auto = value_style(chosen)
    limits = limits or auto
    if ax is not None or image is None:
        return image_grid(chosen, labels=[str(c) for c in index], limits=limits, cmap=cmap,
                          title=title, ncols=ncols, cell_inches=0.5, ax=ax)
    ncols = min(ncols, len(index))
    nrows = -(-len(index) // ncols)
    fig = new_figure(1.2 + ncols * 0.55, 0.4 + nrows * 0.7)
    left, right = fig.subplots(1, 2, width_ratios=[1.1, ncols * 0.55])
    image_grid(image.reshape(1, *image.shape[-2:]), scale="shared", title="input", ax=left)
    image_grid(chosen, labels=[str(c) for c in index], limits=limits, cmap=cmap, title=title, ncols=ncols, ax=right)
    return fig


def plot_feature_maps_batch(
    maps: torch.Tensor,
    images: torch.Tensor,
    *,
    channels: Sequence[int] | None = None,
    captions: Sequence[str] | None = None,
    title: str | None = None,
    ncols: int = 8,
) -> Figure:
    """Several inputs' conv activations ``(N, C, H, W)``: one row per input, input image on the left.

    All rows share one colour range so channels can be compared across inputs.
    """
    if maps.dim() != 4 or len(images) != len(maps):
        raise ReplearnError(f"expected maps (N, C, H, W) and N images; got {tuple(maps.shape)} and {len(images)} images")
    index = list(range(maps.shape[1])) if channels is None else list(channels)
    chosen = maps[:, index].detach().cpu()
    cmap, limits = value_style(chosen)
    n = len(maps)
    ncols = min(ncols, len(index))
    nrows = -(-len(index) // ncols)
    fig = new_figure(1.3 + ncols * 0.5, (title is not None) * 0.3 + n * (0.35 + nrows * 0.55))
    axes = np.asarray(fig.subplots(n, 2, width_ratios=[1.0, ncols * 0.5], squeeze=False))
    for i in range(n):
        caption = captions[i] if captions is not None else f"input {i}"
        image_grid(images[i].reshape(1, *images.shape[-2:]), title=caption, ax=axes[i, 0])
        image_grid(chosen[i], labels=[str(c) for c in index], limits=limits, cmap=cmap, ncols=ncols, ax=axes[i, 1])
    if title:
        fig.suptitle(title, fontsize=10)
    mappable = axes[0, 1].images[0]
    fig.colorbar(mappable, ax=axes[:, 1].tolist(), shrink=0.6, aspect=30)
    return fig


def plot_activation_heatmap(
    acts: torch.Tensor,
    *,
    row_labels: Sequence[str] | None = None,
    unit_labels: Sequence[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Activations ``(N, U)`` of N inputs as a heatmap (rows: inputs, columns: units)."""
    if acts.dim() != 2:
        raise ReplearnError(f"expected activations of shape (N, U), got {tuple(acts.shape)}")
    values = acts.detach().float().cpu()
    n, u = values.shape
    cmap, (vmin, vmax) = value_style(values)
    if ax is None:
        fig = new_figure(min(2.0 + u * 0.06, 11.0) if unit_labels is None else 2.0 + u * 0.45, 0.9 + n * 0.32)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    im = ax.imshow(values.numpy(), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_yticks(range(n), row_labels if row_labels is not None else [f"input {i}" for i in range(n)], fontsize=7)
    if unit_labels is not None:
        ax.set_xticks(range(u), unit_labels, fontsize=7, rotation=90 if max(map(len, unit_labels)) > 2 else 0)
    else:
        ax.set_xlabel("unit", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
    return fig
