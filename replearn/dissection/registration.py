"""Registering a layer's cells on the image: where each cell sits, upsampling to pixels, pooling back to cells.

A conv layer's cell ``(y, x)`` looks at a receptive field centred at pixel ``centre + y * step``
(:func:`replearn.recording.receptive_field.unit_centres`). Its map is compared with 28x28
concept masks, so it is upsampled by interpolating linearly *between the cells' true centres*
(constant beyond the outermost ones). Generic bilinear upsampling (``align_corners=False``)
instead spreads the cells evenly over the image: for the 7x7 cells of 3x3/stride-2 convs it
puts cell ``i`` at ``4i + 1.5`` px instead of ``4i``, a 1.5 px shift that moves a thin edge
off the edge it detects.

Every map operation here is separable and linear: two small matmuls, ``(H, h) @ map @ (w, W)``,
much faster on CPU than ``F.interpolate`` for thousands of tiny single-channel maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from replearn.errors import ReplearnError
from replearn.recording.receptive_field import unit_centres


@dataclass(frozen=True)
class Geometry:
    """A layer's grid: ``cells`` (h, w), cell 0 centred at pixel ``centre`` (both axes), ``step`` px apart."""

    cells: tuple[int, int]
    centre: float = 0.0
    step: float = 1.0

    @classmethod
    def full(cls, size: tuple[int, int]) -> Geometry:
        """One cell per pixel (gradient maps, full-resolution maps): upsampling is the identity."""
        return cls((int(size[0]), int(size[1])))

    @classmethod
    def evenly(cls, cells: tuple[int, int], size: tuple[int, int]) -> Geometry:
        """Cells tiling the image evenly (cell ``i`` centred on tile ``i``), e.g. maps made by non-overlapping
        average pooling; upsampling then equals bilinear ``align_corners=False``. Needs square tiles."""
        step = size[0] / cells[0]
        if not math.isclose(step, size[1] / cells[1]):
            raise ReplearnError(f"cells {tuple(cells)} do not tile a {tuple(size)} image in square tiles; "
                                "pass the layer's Geometry explicitly")
        return cls((int(cells[0]), int(cells[1])), (step - 1) / 2, step)

    def is_identity(self, size: tuple[int, int]) -> bool:
        """True when each cell is one pixel of an image of ``size``."""
        return tuple(self.cells) == tuple(size) and self.centre == 0 and self.step == 1

    def as_dict(self) -> dict:
        """JSON-ready: ``{"cells": [h, w], "centre": px, "step": px}``."""
        return {"cells": list(self.cells), "centre": float(self.centre), "step": float(self.step)}


def layer_geometry(model: nn.Module, layer: str, cells: tuple[int, int], size: tuple[int, int]) -> Geometry:
    """The geometry of ``layer``'s (h, w) maps on images of ``size``, from its receptive fields."""
    grid = unit_centres(model, int(size[0])).get(layer)
    if grid is None and tuple(cells) == tuple(size):
        return Geometry.full(size)
    if grid is None:
        raise ReplearnError(f"layer {layer!r} has {tuple(cells)} maps but its units see the whole image; "
                            "dissect it with method=grad_x_input")
    return Geometry((int(cells[0]), int(cells[1])), float(grid[0]), float(grid[1]))


_CACHE: dict[tuple, torch.Tensor] = {}
# Thresholds are estimated on every SAMPLE_STRIDE-th row and column of the upsampled maps. The stride is odd
# so the samples fall on every phase of the 2-, 4- and 8-px cell grids: with an even stride a 14x14 grid is
# sampled only at its cell centres, where a map peaks, and the threshold comes out too high.
SAMPLE_STRIDE = 3


def sample_grid(size: tuple[int, int]) -> torch.Tensor:
    """bool (H, W): the pixels :func:`sampled` reads."""
    grid = torch.zeros(size, dtype=torch.bool)
    grid[::SAMPLE_STRIDE, ::SAMPLE_STRIDE] = True
    return grid


def upsample_matrix(cells: int, size: int, centre: float, step: float) -> torch.Tensor:
    """(size, cells): pixel p interpolates linearly between the two cells whose centres flank it, and
    takes the outermost cell's value beyond the outermost centres."""
    key = ("up", cells, size, float(centre), float(step))
    if key not in _CACHE:
        t = ((torch.arange(size, dtype=torch.float64) - centre) / step).clamp(0, cells - 1)  # position in cells
        low = t.floor().long().clamp(max=max(cells - 2, 0))
        frac = (t - low) if cells > 1 else torch.zeros(size, dtype=torch.float64)
        matrix = torch.zeros(size, cells, dtype=torch.float64)
        rows = torch.arange(size)
        matrix[rows, low] = 1 - frac
        if cells > 1:
            matrix[rows, low + 1] += frac
        _CACHE[key] = matrix.float()
    return _CACHE[key]


def pooling_matrix(cells: int, size: int, centre: float, step: float) -> torch.Tensor:
    """(cells, size): cell i averages the pixels of the ``step``-wide window centred on its centre (pixels
    partly inside count in proportion; the part of the window outside the image is ignored)."""
    key = ("pool", cells, size, float(centre), float(step))
    if key not in _CACHE:
        mid = centre + step * torch.arange(cells, dtype=torch.float64)[:, None]  # (cells, 1)
        px = torch.arange(size, dtype=torch.float64)[None, :]  # pixel p covers [p - 0.5, p + 0.5]
        overlap = (torch.minimum(mid + step / 2, px + 0.5) - torch.maximum(mid - step / 2, px - 0.5)).clamp(min=0)
        total = overlap.sum(1, keepdim=True)
        _CACHE[key] = torch.where(total > 0, overlap / total.clamp(min=1e-12), 0.0).float()
    return _CACHE[key]


def _matrices(geometry: Geometry, size: tuple[int, int], kind) -> tuple[torch.Tensor, torch.Tensor]:
    return (kind(geometry.cells[0], size[0], geometry.centre, geometry.step),
            kind(geometry.cells[1], size[1], geometry.centre, geometry.step))


def upsample(maps: torch.Tensor, geometry: Geometry, size: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) -> (..., H, W) registered upsampling; the identity for full-resolution maps."""
    if tuple(maps.shape[-2:]) != tuple(geometry.cells):
        raise ReplearnError(f"maps of shape {tuple(maps.shape[-2:])} do not match their geometry's cells "
                            f"{tuple(geometry.cells)}; give each layer the geometry of its own maps")
    if geometry.is_identity(size):
        return maps.float()
    rows, cols = _matrices(geometry, size, upsample_matrix)  # (H, h), (W, w)
    return rows @ maps.float() @ cols.T


def pool(images: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """(..., H, W) -> (..., h, w): each cell's window average (a perfect detector's native map of a mask)."""
    size = tuple(images.shape[-2:])
    if geometry.is_identity(size):
        return images.float()
    rows, cols = _matrices(geometry, size, pooling_matrix)  # (h, H), (w, W)
    return rows @ images.float() @ cols.T


def sampled(maps: torch.Tensor, geometry: Geometry, size: tuple[int, int]) -> torch.Tensor:
    """(B, U, h, w) -> (U, B * n): the upsampled maps on the pixels of :func:`sample_grid`.

    The thresholds are quantiles of the upsampled maps; a subsampled grid estimates them at a ninth
    of the cost (neighbouring upsampled pixels are strongly correlated anyway).
    """
    s = SAMPLE_STRIDE
    if geometry.is_identity(size):
        grid = maps[..., ::s, ::s].float()
    else:
        rows, cols = _matrices(geometry, size, upsample_matrix)
        grid = rows[::s] @ maps.float() @ cols[::s].T
    return grid.transpose(0, 1).reshape(maps.shape[1], -1)
