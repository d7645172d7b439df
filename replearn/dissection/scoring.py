"""The dissection's scoring rule, shared by units and by the reference detectors (ceilings, smeared ink).

A unit's maps are upsampled on its layer's geometry (:mod:`replearn.dissection.registration`);
its threshold is the top ``quantile`` of those upsampled values; its mask is the pixels at or
above the threshold (:func:`on_pixels`); its IoU with a concept is accumulated over the probe set:
``IoU(u, c) = sum |M_u ∩ L_c| / sum |M_u ∪ L_c|``.
"""

from __future__ import annotations

import math

import torch

from replearn.dissection.ink_maps import InkMaps
from replearn.dissection.registration import Geometry, tiles


def thresholds(values: list[torch.Tensor], quantile: float) -> torch.Tensor:
    """Per-unit threshold (U,) from its sampled values: the top-``quantile`` value ("on" is >= it).

    Ties decide the edge cases. Ties at the peak (saturated responses, common on near-binary MNIST)
    are all on. A plateau below the peak (a unit that is 0 on most pixels and above 0 on fewer than
    the quantile) is excluded: its mask is the pixels above the plateau. A constant unit is never on.
    """
    flat = torch.cat(values, 1)  # (U, n)
    k = max(1, math.ceil(quantile * flat.shape[1]))
    kth = flat.topk(k, dim=1, sorted=False).values.min(1).values
    peak, low = flat.max(1).values, flat.min(1).values
    tied_plateau = (kth < peak) & ((flat >= kth[:, None]).sum(1) > 2 * k)
    above = torch.nextafter(kth, torch.full_like(kth, math.inf))
    out = torch.where(tied_plateau, above, kth)
    return torch.where(peak == low, torch.full_like(kth, math.inf), out)


# A tile is evaluated when one of its cells reaches this fraction below the threshold: the interpolated
# value can exceed its largest cell by a few float32 rounding steps (weights sum to 1 only to ~1e-7).
_TILE_MARGIN = 1e-5


def _divmod(index: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(index // n, index % n) for non-negative integers (torch's integer remainder is several times slower)."""
    quotient = index.div(n, rounding_mode="floor")
    return quotient, index - quotient * n


def _either_neighbour(hot: torch.Tensor, dim: int) -> torch.Tensor:
    """``hot[t] | hot[t + 1]`` along ``dim`` (one tile per pair of neighbouring cells); a single cell is its own tile."""
    n = hot.shape[dim]
    return hot if n == 1 else hot.narrow(dim, 0, n - 1) | hot.narrow(dim, 1, n - 1)


def on_pixels(maps: torch.Tensor | InkMaps, thresholds: torch.Tensor, geometry: Geometry, size: tuple[int, int]
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels where the upsampled maps (B, U, h, w) reach their unit's threshold (U,), as (unit, image, pixel)
    index vectors; exactly the pixels of ``interpolate(maps) >= thresholds``, without upsampling whole maps.

    Only the tiles (:func:`~replearn.dissection.registration.tiles`) with a cell near or above the threshold
    are evaluated: on pixels are the top half percent, so that is a small fraction of the image.
    """
    if isinstance(maps, InkMaps):  # gradient maps, full resolution
        return maps.on_pixels(thresholds)
    b, u = maps.shape[:2]
    limit = thresholds.float()[None, :, None, None]
    if geometry.is_identity(size):
        b_idx, u_idx, y, x = (maps >= limit).nonzero(as_tuple=True)
        return u_idx, b_idx, y * size[1] + x
    grid = tiles(geometry, size)
    m = maps.float()
    hot = m >= limit - limit.abs() * _TILE_MARGIN  # (B, U, h, w)
    tile_hot = _either_neighbour(_either_neighbour(hot, 2), 3)  # (B, U, Ty, Tx): tile t spans cells t and t + 1
    where = tile_hot.flatten().nonzero().squeeze(1)  # (Q,) = map * T + tile, map = image * U + unit
    if len(where) == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, empty
    n_tiles, cells = grid.corners.shape[0], maps.shape[2] * maps.shape[3]
    map_index, tile = _divmod(where, n_tiles)
    corner = grid.corners.index_select(0, tile) + (map_index * cells)[:, None]  # (Q, 4) offsets in ``m``
    v_ll, v_hl, v_lh, v_hh = m.reshape(-1).take(corner).unbind(1)  # (Q,) each
    wl_y, wh_y = grid.w_low_y.index_select(0, tile), grid.w_high_y.index_select(0, tile)  # (Q, Ly)
    # interpolate()'s formula, operation for operation: along y, then along x
    left = v_ll[:, None] * wl_y + v_hl[:, None] * wh_y  # (Q, Ly): the tile's low column, interpolated along y
    right = v_lh[:, None] * wl_y + v_hh[:, None] * wh_y
    limit = thresholds.float().index_select(0, _divmod(map_index, u)[1])  # (Q,)
    # A pixel interpolates between its row's left and right values, so only rows whose larger end is near the
    # threshold go on to the x step (NaN padding rows never do).
    rows = (torch.maximum(left, right) >= (limit - limit.abs() * _TILE_MARGIN)[:, None]).flatten().nonzero().squeeze(1)
    length_y, length_x = left.shape[1], grid.w_low_x.shape[1]
    q = rows.div(length_y, rounding_mode="floor")  # (R,) the tile of each row
    row_tile = tile.index_select(0, q)
    values = (left.reshape(-1).index_select(0, rows)[:, None] * grid.w_low_x.index_select(0, row_tile)
              + right.reshape(-1).index_select(0, rows)[:, None] * grid.w_high_x.index_select(0, row_tile))  # (R, Lx)
    hit = (values >= limit.index_select(0, q)[:, None]).flatten().nonzero().squeeze(1)  # (S,) = row * Lx + column
    row, column = _divmod(hit, length_x)
    on_map = map_index.index_select(0, q.index_select(0, row))
    cell = _divmod(rows.index_select(0, row), length_y)[1] * length_x + column  # pixel within the tile
    pixels = grid.pixels.reshape(-1).take(row_tile.index_select(0, row) * (length_y * length_x) + cell)
    image, unit = _divmod(on_map, u)
    return unit, image, pixels


def accumulate(maps: torch.Tensor | InkMaps, thresholds: torch.Tensor, pattern_ids: torch.Tensor, n_patterns: int,
               geometry: Geometry, size: tuple[int, int], counts: torch.Tensor, unit_area: torch.Tensor
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Add one chunk's on pixels to ``counts`` (U, n_patterns) (per unit, per concept pattern) and ``unit_area`` (U,).

    ``pattern_ids`` (B, H*W): the chunk's pixel patterns (:mod:`replearn.dissection.patterns`); a unit's
    intersections with the concepts are ``counts @ bits``. Returns the peaks (B, U) and the on pixels as
    (unit, image in the chunk, pixel) index vectors.
    """
    peak = maps.peaks() if isinstance(maps, InkMaps) else maps.flatten(2).amax(2)  # (B, U)
    units, images, pixels = on_pixels(maps, thresholds, geometry, size)
    if len(units):
        key = units * n_patterns + pattern_ids.reshape(-1).take(images * pattern_ids.shape[1] + pixels).long()
        counts += torch.bincount(key, minlength=counts.numel()).view_as(counts)
        unit_area += torch.bincount(units, minlength=len(unit_area)).double()
    return peak, (units, images, pixels)


def intersections(counts: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """(U, K) float64 |M_u ∩ L_c| from the per-pattern counts (U, n) and the patterns' concepts (n, K)."""
    return counts.double() @ bits.double()


def iou(inter: torch.Tensor, unit_area: torch.Tensor, concept_area: torch.Tensor) -> torch.Tensor:
    """|M ∩ L| / |M ∪ L| elementwise (0 where both are empty); the one formula the labels and the null share,
    so equal counts give bit-identical IoUs."""
    union = unit_area + concept_area - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
