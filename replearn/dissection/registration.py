"""Registering a layer's cells on the image: where each cell sits, upsampling to pixels, pooling back to cells.

A conv layer's cell ``(y, x)`` looks at a receptive field centred at pixel ``centre + y * step``
(:func:`replearn.recording.receptive_field.unit_centres`). Its map is compared with 28x28
concept masks, so it is upsampled by interpolating linearly *between the cells' true centres*
(constant beyond the outermost ones). Generic bilinear upsampling (``align_corners=False``)
instead spreads the cells evenly over the image: for the 7x7 cells of 3x3/stride-2 convs it
puts cell ``i`` at ``4i + 1.5`` px instead of ``4i``, a 1.5 px shift that moves a thin edge
off the edge it detects.

Every map operation here is separable and linear. Pooling is two small matmuls, ``(h, H) @ image @
(W, w)``. Upsampling weighs each pixel's two flanking cells per axis (:func:`interpolate`), and the
dissection evaluates it only inside the tiles whose cells can reach a threshold (:func:`tiles`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from replearn.dissection.ink_maps import InkMaps
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


def axis_weights(cells: int, size: int, centre: float, step: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel of one axis: (low cell, high cell, weight of low, weight of high), the two nonzero entries of
    :func:`upsample_matrix`'s row (high = low, weight 0, for a single cell)."""
    key = ("axis", cells, size, float(centre), float(step))
    if key not in _CACHE:
        t = ((torch.arange(size, dtype=torch.float64) - centre) / step).clamp(0, cells - 1)
        low = t.floor().long().clamp(max=max(cells - 2, 0))
        frac = (t - low) if cells > 1 else torch.zeros(size, dtype=torch.float64)
        high = (low + 1).clamp(max=cells - 1)
        _CACHE[key] = (low, high, (1 - frac).float(), frac.float())
    return _CACHE[key]


def interpolate(maps: torch.Tensor, geometry: Geometry, size: tuple[int, int],
                rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> torch.Tensor:
    """(..., h, w) -> (..., R, C): the registered upsampling at pixel ``rows`` x ``cols`` (default: all).

    The one formula every upsampled value comes from (thresholds, on pixels, figures), so a value
    exactly at a threshold is on or off the same way everywhere: interpolate along y, then along x,
    as separate multiplies and adds (no fused multiply-add; the tiles of :func:`on_pixels` repeat it).
    """
    low_y, high_y, wl_y, wh_y = axis_weights(geometry.cells[0], size[0], geometry.centre, geometry.step)
    low_x, high_x, wl_x, wh_x = axis_weights(geometry.cells[1], size[1], geometry.centre, geometry.step)
    if rows is not None:
        low_y, high_y, wl_y, wh_y = low_y[rows], high_y[rows], wl_y[rows], wh_y[rows]
    if cols is not None:
        low_x, high_x, wl_x, wh_x = low_x[cols], high_x[cols], wl_x[cols], wh_x[cols]
    m = maps.float()
    along_y = m.index_select(-2, low_y) * wl_y[:, None] + m.index_select(-2, high_y) * wh_y[:, None]  # (..., R, w)
    return along_y.index_select(-1, low_x) * wl_x + along_y.index_select(-1, high_x) * wh_x  # (..., R, C)


def upsample(maps: torch.Tensor, geometry: Geometry, size: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) -> (..., H, W) registered upsampling; the identity for full-resolution maps."""
    if tuple(maps.shape[-2:]) != tuple(geometry.cells):
        raise ReplearnError(f"maps of shape {tuple(maps.shape[-2:])} do not match their geometry's cells "
                            f"{tuple(geometry.cells)}; give each layer the geometry of its own maps")
    if geometry.is_identity(size):
        return maps.float()
    return interpolate(maps, geometry, size)


@dataclass(frozen=True)
class Tiles:
    """A geometry's upsampling cut into tiles: the pixels between the same 2 x 2 cells form one tile.

    Along each axis, tile ``t`` holds the pixels whose low cell is ``t`` (:func:`axis_weights`); a
    pixel's value depends only on its tile's four cells, so a tile whose cells all lie below a
    threshold has no pixel at or above it. Tiles are numbered ``ty * Tx + tx``; their pixels are
    padded to the longest tile, ``Ly x Lx``.

    - ``shape``: (Ty, Tx) tiles; ``corners`` (T, 4): the offsets in an (h, w) map of each tile's
      cells (low-low, high-low, low-high, high-high; y first);
    - ``w_low_y``/``w_high_y`` (T, Ly), ``w_low_x``/``w_high_x`` (T, Lx): the pixels' weights, NaN on
      padding (so a padded value is never at or above a threshold);
    - ``pixels`` (T, Ly * Lx): each tile pixel's index in the (H, W) image (0 on padding).
    """

    shape: tuple[int, int]
    corners: torch.Tensor
    w_low_y: torch.Tensor
    w_high_y: torch.Tensor
    w_low_x: torch.Tensor
    w_high_x: torch.Tensor
    pixels: torch.Tensor


def _axis_tiles(cells: int, size: int, centre: float, step: float):
    """Per tile of one axis: (pixels (T, L), low-cell weights (T, L), high-cell weights (T, L), low cell (T,), high cell (T,))."""
    low, high, w_low, w_high = axis_weights(cells, size, centre, step)
    count = max(cells - 1, 1)
    members = [(low == t).nonzero().flatten() for t in range(count)]
    length = max(1, max(len(m) for m in members))
    pixels = torch.zeros(count, length, dtype=torch.int64)
    valid = torch.zeros(count, length, dtype=torch.bool)
    for t, m in enumerate(members):
        pixels[t, :len(m)], valid[t, :len(m)] = m, True
    nan = torch.tensor(float("nan"))
    tile = torch.arange(count)
    return (pixels, torch.where(valid, w_low[pixels], nan), torch.where(valid, w_high[pixels], nan), tile,
            (tile + 1).clamp(max=cells - 1))


def tiles(geometry: Geometry, size: tuple[int, int]) -> Tiles:
    """The :class:`Tiles` of ``geometry`` on images of ``size`` (cached)."""
    key = ("tiles", geometry, tuple(size))
    if key not in _CACHE:
        py, wly, why, ly, hy = _axis_tiles(geometry.cells[0], size[0], geometry.centre, geometry.step)
        px, wlx, whx, lx, hx = _axis_tiles(geometry.cells[1], size[1], geometry.centre, geometry.step)
        ty, tx = torch.meshgrid(torch.arange(len(ly)), torch.arange(len(lx)), indexing="ij")
        ty, tx = ty.flatten(), tx.flatten()  # (T,)
        w = geometry.cells[1]
        corners = torch.stack([ly[ty] * w + lx[tx], hy[ty] * w + lx[tx], ly[ty] * w + hx[tx], hy[ty] * w + hx[tx]], 1)
        pixels = (py[ty][:, :, None] * size[1] + px[tx][:, None, :]).flatten(1)  # (T, Ly * Lx)
        _CACHE[key] = Tiles((len(ly), len(lx)), corners, wly[ty], why[ty], wlx[tx], whx[tx], pixels)
    return _CACHE[key]


def pool(images: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """(..., H, W) -> (..., h, w): each cell's window average (a perfect detector's native map of a mask)."""
    size = tuple(images.shape[-2:])
    if geometry.is_identity(size):
        return images.float()
    rows, cols = _matrices(geometry, size, pooling_matrix)  # (h, H), (w, W)
    return rows @ images.float() @ cols.T


def sampled(maps: torch.Tensor | InkMaps, geometry: Geometry, size: tuple[int, int]) -> torch.Tensor:
    """(B, U, h, w) -> (U, B * n): the upsampled maps on the pixels of :func:`sample_grid`.

    The thresholds are quantiles of the upsampled maps; a subsampled grid estimates them at a ninth
    of the cost (neighbouring upsampled pixels are strongly correlated anyway).
    """
    s = SAMPLE_STRIDE
    if isinstance(maps, InkMaps):  # gradient maps: full resolution, stored on the ink
        grid = maps.at(torch.arange(0, size[0], s), torch.arange(0, size[1], s)).float()
    elif geometry.is_identity(size):
        grid = maps[..., ::s, ::s].float()
    else:
        grid = interpolate(maps, geometry, size, torch.arange(0, size[0], s), torch.arange(0, size[1], s))
    return grid.transpose(0, 1).reshape(maps.shape[1], -1)
