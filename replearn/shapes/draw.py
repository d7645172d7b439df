"""An anti-aliased, batched rasterizer for thick line segments at 0, 45, 90 and 135 degrees.

A segment's intensity is a product of two clamped ramps, one across the stroke and
one along it (a box with square caps that reach ``half_width`` past each end, so two
strokes meeting at a corner close it):

    f = clamp(hw + 0.5 - |v - v_c|, 0, 1) * clamp(hl + hw + 0.5 - |u - u_c|, 0, 1)

with ``u``/``v`` the pixel's coordinates along/across the stroke. Pixel centres sit at
integer coordinates, ``x`` to the right and ``y`` down. Both ramps depend on one
coordinate each, so they are computed per row/column (or per diagonal) and the
(H, W) field is one broadcast product: no per-pixel Python work.

Images are the per-pixel MAX over segments, rounded to uint8. Ink is ``image >
INK_LEVEL``; a pixel belongs to a segment's mask when that segment alone reaches the
same level (f >= 127.5, which is exactly what rounds above 127). So every concept
mask below is a union of per-segment masks, and the four orientation masks are
exactly the ink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ORIENTATIONS = ("horizontal", "diag_up", "vertical", "diag_down")  # 0, 45, 90, 135 degrees (y up), as in dissection
INK_LEVEL = 127  # uint8: ink = pixel > INK_LEVEL
_HALF = 127.5  # a float intensity (0-255) rounds above INK_LEVEL exactly when it is >= this
_CHUNK = 1024  # images per rendering chunk: the (B, H, W) fields stay in cache
_SQRT_HALF = math.sqrt(0.5)


@dataclass
class Segments:
    """A flat list of M segments over N images (numpy, one entry per segment).

    ``image`` (M,) int: which image; ``x1, y1, x2, y2`` (M,) float: end points of the centre
    line in pixels; ``half_width`` (M,) float; ``code`` (M,) int: bits OR-ed into the
    per-pixel code where the segment is ink (part type and object bits, see generate).
    """

    image: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    half_width: np.ndarray
    code: np.ndarray

    def orientation(self) -> np.ndarray:
        """(M,) int in 0..3, the index into ORIENTATIONS (angle measured with y pointing up)."""
        angle = np.degrees(np.arctan2(-(self.y2 - self.y1), self.x2 - self.x1))
        return np.rint(angle / 45.0).astype(np.int64) % 4


@dataclass
class Rendered:
    """``images`` uint8 (N, H, W); ``ink`` int64 (N, 4): level-1 pixels per orientation;
    ``codes`` int16 (N, H, W) or None: bits 0-3 the orientation masks, higher bits the
    segments' ``code`` bits (shifted left by 4)."""

    images: torch.Tensor
    ink: torch.Tensor
    codes: torch.Tensor | None


def _along_across(o: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u along, v across) of points for orientation ``o``, in the units the index tables use."""
    if o == 0:
        return x, y
    if o == 2:
        return y, x
    if o == 1:  # "/": runs along (1, -1)
        return (x - y) * _SQRT_HALF, (x + y) * _SQRT_HALF
    return (x + y) * _SQRT_HALF, (x - y) * _SQRT_HALF  # "\": runs along (1, 1)


def _index_tables(size: int) -> dict[str, torch.Tensor]:
    """Flat pixel -> diagonal indices, and each index's coordinate value."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    k = torch.arange(2 * size - 1, dtype=torch.float32)
    return {
        "sum": (xx + yy).reshape(-1), "dif": (xx - yy + size - 1).reshape(-1),  # (H*W,) each
        "sum_val": k * _SQRT_HALF, "dif_val": (k - (size - 1)) * _SQRT_HALF,  # (2H-1,)
        "line": torch.arange(size, dtype=torch.float32),
    }


def _ramp(coord: torch.Tensor, centre: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """clamp(reach + 0.5 - |coord - centre|, 0, 1): (B, S, L) from coord (L,), centre/reach (B, S)."""
    return (reach[..., None] + 0.5 - (coord - centre[..., None]).abs()).clamp_(0.0, 1.0)


def _dense(values: np.ndarray, rows: np.ndarray, slots: np.ndarray, shape: tuple[int, int], fill) -> torch.Tensor:
    out = np.full(shape, fill, dtype=values.dtype)
    out[rows, slots] = values
    return torch.from_numpy(out)


def render(seg: Segments, n: int, size: int, with_codes: bool = True) -> Rendered:
    """Rasterize ``seg`` into ``n`` images of ``size`` x ``size`` (see the module docstring)."""
    tables = _index_tables(size)
    orient = seg.orientation()
    # Slot = rank of a segment among its image's segments of the same orientation, so that each
    # rendering step draws one segment of one fixed orientation in every image of a chunk.
    order = np.lexsort((orient, seg.image))
    key = seg.image[order] * 4 + orient[order]
    first = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
    rank = np.arange(len(key)) - np.repeat(first, np.diff(np.r_[first, len(key)]))
    slot = np.empty_like(rank)
    slot[order] = rank
    counts = np.zeros((n, 4), np.int64)
    np.add.at(counts, (seg.image, orient), 1)
    # Images with similar per-orientation counts share a chunk: little padding.
    image_order = np.lexsort(counts.T[::-1])
    position = np.empty(n, np.int64)
    position[image_order] = np.arange(n)
    images = torch.empty(n, size * size, dtype=torch.uint8)
    ink = torch.zeros(n, 4, dtype=torch.int64)
    codes = torch.zeros(n, size * size, dtype=torch.int16) if with_codes else None
    seg_pos = position[seg.image]
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        b = stop - start
        rows_out = torch.from_numpy(image_order[start:stop])
        peak = torch.zeros(b, size * size)  # (B, H*W) max over all segments
        bits = torch.zeros(b, size * size, dtype=torch.int16) if with_codes else None
        in_chunk = (seg_pos >= start) & (seg_pos < stop)
        for o in range(4):
            pick = np.flatnonzero(in_chunk & (orient == o))
            acc = _render_orientation(seg, pick, seg_pos[pick] - start, slot[pick], o, b, size, tables, bits)
            ink_o = (acc >= _HALF).sum(dim=1)
            ink[rows_out, o] = ink_o
            if with_codes:
                bits |= (acc >= _HALF).to(torch.int16) << o
            torch.maximum(peak, acc, out=peak)
        images[rows_out] = peak.round_().to(torch.uint8)
        if with_codes:
            codes[rows_out] = bits
    shape = (n, size, size)
    return Rendered(images.reshape(shape), ink, codes.reshape(shape) if with_codes else None)


def _render_orientation(seg: Segments, pick: np.ndarray, rows: np.ndarray, slots: np.ndarray, o: int, b: int,
                        size: int, tables: dict, bits: torch.Tensor | None) -> torch.Tensor:
    """Max field (B, H*W) of the segments ``pick`` (all of orientation ``o``); ORs their code bits into ``bits``."""
    acc = torch.zeros(b, size * size)
    if len(pick) == 0:
        return acc
    s_max = int(slots.max()) + 1
    cx = (seg.x1[pick] + seg.x2[pick]) / 2
    cy = (seg.y1[pick] + seg.y2[pick]) / 2
    u_c, v_c = _along_across(o, cx, cy)
    half_len = np.hypot(seg.x2[pick] - seg.x1[pick], seg.y2[pick] - seg.y1[pick]) / 2
    hw = seg.half_width[pick]
    shape = (b, s_max)
    # Empty slots get a negative reach: both ramps are 0 everywhere.
    u_c, v_c = (_dense(a.astype(np.float32), rows, slots, shape, 0.0) for a in (u_c, v_c))
    reach_v = _dense(hw.astype(np.float32), rows, slots, shape, -10.0)
    reach_u = _dense((half_len + hw).astype(np.float32), rows, slots, shape, -10.0)
    code = _dense((seg.code[pick] << 4).astype(np.int16), rows, slots, shape, 0)
    if o in (0, 2):
        across = _ramp(tables["line"], v_c, reach_v)  # (B, S, H)
        along = _ramp(tables["line"], u_c, reach_u).mul_(255.0)  # (B, S, W)
        if o == 2:  # vertical: across runs over columns, along over rows
            across, along = along, across
        rows_f, cols_f = across, along  # (B, S, H) x (B, S, W)
    else:
        along_idx, across_idx = ("dif", "sum") if o == 1 else ("sum", "dif")
        across = _ramp(tables[f"{across_idx}_val"], v_c, reach_v)  # (B, S, 2H-1)
        along = _ramp(tables[f"{along_idx}_val"], u_c, reach_u).mul_(255.0)
    field = torch.empty(b, size * size)
    gathered = torch.empty(b, size * size)
    mask = torch.empty(b, size * size, dtype=torch.bool)
    for s in range(s_max):
        if o in (0, 2):
            torch.mul(rows_f[:, s, :, None], cols_f[:, s, None, :], out=field.view(b, size, size))
        else:
            torch.index_select(across[:, s], 1, tables[across_idx], out=field)
            torch.index_select(along[:, s], 1, tables[along_idx], out=gathered)
            field.mul_(gathered)
        torch.maximum(acc, field, out=acc)
        if bits is not None:
            torch.ge(field, _HALF, out=mask)
            bits.bitwise_or_(mask * code[:, s, None])  # (B, H*W) int16: the segment's bits where it is ink
    return acc
