"""Image mosaics: many small images drawn as one ``imshow`` (fast to render, small PNGs)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from replearn.errors import ReplearnError

DPI = 110
SCALES = ("shared", "symmetric", "per_image")


def as_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W) -> float (N, H, W) numpy array."""
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, float)
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ReplearnError(f"expected single-channel images (N, 1, H, W), got shape {tuple(arr.shape)}")
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ReplearnError(f"expected images of shape (N, H, W) or (N, 1, H, W), got {tuple(arr.shape)}")
    return arr


def rescale_each(images: np.ndarray) -> np.ndarray:
    """Stretch every image to [0, 1] on its own (constant images become 0.5)."""
    lo = np.nanmin(images, axis=(1, 2), keepdims=True)
    hi = np.nanmax(images, axis=(1, 2), keepdims=True)
    span = hi - lo
    return np.where(span > 0, (images - lo) / np.where(span > 0, span, 1.0), 0.5)


def tile(images: np.ndarray, ncols: int, pad: int = 1, pad_y: int | None = None) -> np.ndarray:
    """(N, H, W) -> one mosaic array with ``ncols`` columns; gaps and empty cells are NaN.

    ``pad`` separates columns, ``pad_y`` (default ``pad``) rows; a taller row gap leaves room for labels.
    """
    n, h, w = images.shape
    pad_y = pad if pad_y is None else pad_y
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    out = np.full((nrows * (h + pad_y) - pad_y, ncols * (w + pad) - pad), np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + pad_y) : r * (h + pad_y) + h, c * (w + pad) : c * (w + pad) + w] = images[i]
    return out


def short_number(value: float) -> str:
    """A compact label: 2 significant digits, whole numbers from 100 up (never 3.4e+02)."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2g}"


def default_cols(n: int, aspect: float = 1.0) -> int:
    """Columns that make a roughly square mosaic of ``n`` cells of width/height ``aspect``."""
    return max(1, math.ceil(math.sqrt(n / max(aspect, 1e-6))))


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with the project's DPI and a tight layout."""
    fig = Figure(figsize=(max(width, 2.5), max(height, 1.2)), dpi=DPI, layout="constrained")
    return fig


def image_grid(
    images: torch.Tensor | np.ndarray,
    *,
    ncols: int | None = None,
    labels: Sequence[str] | None = None,
    scale: str = "shared",
    cmap: str | None = None,
    title: str | None = None,
    colorbar: bool = False,
    cell_inches: float = 0.6,
    pad: int = 1,
    limits: tuple[float, float] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw ``(N, [1,] H, W)`` images as a labelled mosaic and return the figure.

    ``scale``: ``shared`` (one linear range, e.g. pixels), ``symmetric`` (one range centred at 0
    with a diverging colormap, e.g. weights) or ``per_image`` (each image stretched to its range).
    ``limits`` fixes the colour range instead (to share it between several grids).
    """
    if scale not in SCALES:
        raise ReplearnError(f"scale={scale!r} is invalid: choose one of {', '.join(SCALES)}")
    arr = as_images(images)
    if len(arr) == 0:
        raise ReplearnError("image_grid got no images; pass at least one")
    n, h, w = arr.shape
    if labels is not None and len(labels) != n:
        raise ReplearnError(f"image_grid got {len(labels)} labels for {n} images; pass one label per image")
    ncols = ncols or default_cols(n, w / h)
    pad = max(pad, h // 14) if pad == 1 else pad
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    if limits is not None:
        vmin, vmax = limits
    elif scale == "per_image":
        arr = rescale_each(arr)
        vmin, vmax = 0.0, 1.0
    elif scale == "symmetric":
        bound = float(np.nanmax(np.abs(arr))) or 1.0
        vmin, vmax = -bound, bound
    else:
        finite = arr[np.isfinite(arr)]  # empty cells are NaN; a grid of only empty cells gets 0..1
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmax <= vmin:
            vmax = vmin + 1.0
    cmap = cmap or ("RdBu_r" if scale == "symmetric" else "gray")
    # Labels sit in the gap above each row: ~0.16 in of text, converted to pixels of this mosaic.
    pad_y = max(pad, math.ceil(0.16 * h / cell_inches)) if labels is not None else pad
    mosaic = tile(arr, ncols, pad, pad_y)
    own_figure = ax is None
    if own_figure:
        fig = new_figure(
            ncols * cell_inches * (w + pad) / h + (0.9 if colorbar else 0.2),
            nrows * cell_inches * (h + pad_y) / h + (0.4 if title else 0.1),
        )
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    colours = _cmap_with_gaps(cmap, dark=scale == "symmetric" or cmap in ("RdBu_r", "coolwarm"))
    im = ax.imshow(np.ma.masked_invalid(mosaic), cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    fontsize = 7 if cell_inches < 0.8 else 8
    if labels is not None:
        for i, label in enumerate(labels):
            r, c = divmod(i, ncols)
            ax.text(c * (w + pad) + w / 2, r * (h + pad_y) - 0.5, str(label), ha="center", va="bottom",
                    fontsize=fontsize, clip_on=False)
    if title:
        # The first row's labels stand above the images, so the title clears one label line (points).
        ax.set_title(title, fontsize=9, pad=4 + 1.6 * fontsize if labels is not None else 4)
    if colorbar:
        fig.colorbar(im, ax=ax, shrink=0.8)
    if own_figure and title:
        fit_text_width(fig, ax.title)
    return fig


def fit_text_width(fig: Figure, text, margin: float = 0.25) -> None:
    """Widen ``fig`` until ``text`` fits across it (a few small images under a long title would clip it)."""
    for _ in range(3):  # the layout moves the text when the figure grows, so measure again after each step
        fig.draw_without_rendering()
        box = text.get_window_extent(fig._get_renderer())
        overflow = max(fig.bbox.x0 - box.x0, box.x1 - fig.bbox.x1) / fig.dpi + margin
        if overflow <= margin / 2:
            return
        width, height = fig.get_size_inches()
        fig.set_size_inches(width + 2 * overflow, height)


def _cmap_with_gaps(name: str, dark: bool = False):
    """The named colormap with NaN cells (gaps between tiles) drawn grey.

    Light grey separates greyscale tiles; diverging maps are near-white at 0, so they get a darker grey.
    """
    return colormaps[name].with_extremes(bad="#a8a8a8" if dark else "#e4e7ec")


def block_grid(
    blocks: torch.Tensor | np.ndarray,
    *,
    block_labels: Sequence[str] | None = None,
    ncols: int | None = None,
    scale: str = "shared",
    cmap: str | None = None,
    title: str | None = None,
    cell_inches: float = 0.3,
    ax: Axes | None = None,
) -> Figure:
    """Groups of images ``(U, k, [1,] H, W)``: each group tiled as a small square, groups as a grid.

    Used for the top-k view: one block of k examples per unit, the unit index above it.
    """
    data = blocks.detach().float().cpu().numpy() if isinstance(blocks, torch.Tensor) else np.asarray(blocks, float)
    if data.ndim == 5:
        data = data[:, :, 0]
    if data.ndim != 4:
        raise ReplearnError(f"expected image groups of shape (U, k, [1,] H, W), got {tuple(data.shape)}")
    u, k, h, w = data.shape
    if scale == "per_image":
        data = rescale_each(data.reshape(u * k, h, w)).reshape(u, k, h, w)
    inner = default_cols(k)
    tiles = np.stack([tile(group, inner, pad=1) for group in data])  # (U, Hb, Wb), NaN between images
    gap = max(2, h // 6)
    ncols = ncols or default_cols(u, tiles.shape[2] / tiles.shape[1])
    return image_grid(tiles, ncols=ncols, labels=block_labels, scale=scale,
                      limits=(0.0, 1.0) if scale == "per_image" else None, cmap=cmap, title=title,
                      cell_inches=cell_inches * inner, pad=gap, ax=ax)
