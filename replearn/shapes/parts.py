"""Level-2 parts built only from straight strokes, batched over images (numpy).

Coordinates are in 28-pixel canvas units (x right, y down; :mod:`replearn.shapes.scenes`
scales them to the image size). Every builder takes per-image sizes (n,) and returns a
:class:`Drawing` in its canonical pose with its box's top-left corner at the origin;
:func:`transform` turns and mirrors drawings, always onto the four stroke orientations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PART_TYPES = ("l_corner", "t_junction", "x_junction", "square", "triangle", "filled_square")
HATCH_GAP = 1.0  # px between the hatching strokes of a filled square
NO_PART = -1  # a stroke that belongs to no part type (a face's mouth, an arrow's shaft)
_SQRT_HALF = math.sqrt(0.5)


@dataclass
class Drawing:
    """``segs`` float (n, k, 4): x1, y1, x2, y2 per stroke; ``hw`` float (n, k): half widths;
    ``part`` int (k,): index into PART_TYPES or NO_PART, the same for every image."""

    segs: np.ndarray
    hw: np.ndarray
    part: np.ndarray

    @property
    def n(self) -> int:
        return self.segs.shape[0]

    def __add__(self, other: Drawing) -> Drawing:
        return Drawing(np.concatenate([self.segs, other.segs], axis=1), np.concatenate([self.hw, other.hw], axis=1),
                       np.concatenate([self.part, other.part]))

    def shifted(self, dx: np.ndarray, dy: np.ndarray) -> Drawing:
        """Moved by (dx, dy) per image, (n,) each."""
        offset = np.stack([dx, dy, dx, dy], axis=-1)[:, None, :]  # (n, 1, 4)
        return Drawing(self.segs + offset, self.hw, self.part)

    def stroke_boxes(self) -> np.ndarray:
        """(n, k, 4) x_min, y_min, x_max, y_max of each stroke's ink (square caps reach hw past the ends)."""
        x1, y1, x2, y2 = np.moveaxis(self.segs, -1, 0)
        diagonal = (np.abs(x2 - x1) > 1e-6) & (np.abs(y2 - y1) > 1e-6)
        reach = np.where(diagonal, self.hw * math.sqrt(2.0), self.hw)  # a diagonal box's corner sticks out further
        return np.stack([np.minimum(x1, x2) - reach, np.minimum(y1, y2) - reach,
                         np.maximum(x1, x2) + reach, np.maximum(y1, y2) + reach], axis=-1)

    def ink_box(self) -> np.ndarray:
        """(n, 4) x_min, y_min, x_max, y_max of the whole drawing's ink."""
        boxes = self.stroke_boxes()
        return np.concatenate([boxes[..., :2].min(1), boxes[..., 2:].max(1)], axis=-1)

    def orientation_ink(self) -> np.ndarray:
        """(n, 4) estimated ink pixels per orientation (H, /, V, \\ as in draw.ORIENTATIONS): box areas."""
        x1, y1, x2, y2 = np.moveaxis(self.segs, -1, 0)
        area = (np.hypot(x2 - x1, y2 - y1) + 2 * self.hw) * 2 * self.hw  # (n, k)
        orient = np.rint(np.degrees(np.arctan2(-(y2 - y1), x2 - x1)) / 45.0).astype(np.int64) % 4
        return np.stack([np.where(orient == o, area, 0.0).sum(1) for o in range(4)], axis=-1)

    def ink(self) -> np.ndarray:
        """(n, 2) estimated ink pixels on axis (0/90 degree) and diagonal strokes."""
        per = self.orientation_ink()
        return np.stack([per[:, 0] + per[:, 2], per[:, 1] + per[:, 3]], axis=-1)


def strokes(points: list, hw: np.ndarray, part: int | list[int]) -> Drawing:
    """A drawing from strokes given as (x1, y1, x2, y2) tuples of (n,) arrays or scalars, all with half width hw (n,)."""
    n = len(hw)
    segs = np.stack([np.stack([np.broadcast_to(np.asarray(c, float), (n,)) for c in p], axis=-1) for p in points], axis=1)
    parts = np.full(len(points), part) if np.isscalar(part) else np.asarray(part)
    return Drawing(segs, np.repeat(hw[:, None], len(points), axis=1), parts.astype(np.int64))


def part_index(name: str) -> int:
    return PART_TYPES.index(name)


def l_corner(a: np.ndarray, b: np.ndarray, hw: np.ndarray, part: int | None = None) -> Drawing:
    """Two strokes meeting at a right angle at the origin: lengths a (along x) and b (along y)."""
    return strokes([(0, 0, a, 0), (0, 0, 0, b)], hw, part_index("l_corner") if part is None else part)


def t_junction(a: np.ndarray, b: np.ndarray, hw: np.ndarray) -> Drawing:
    """A bar of length a with a stem of length b from its middle."""
    return strokes([(0, 0, a, 0), (a / 2, 0, a / 2, b)], hw, part_index("t_junction"))


def x_junction(a: np.ndarray, hw: np.ndarray, b: np.ndarray | None = None) -> Drawing:
    """Two strokes crossing at their middles: length a (along x) and b (along y, default a)."""
    b = a if b is None else b
    return strokes([(0, b / 2, a, b / 2), (a / 2, 0, a / 2, b)], hw, part_index("x_junction"))


def square(a: np.ndarray, hw: np.ndarray) -> Drawing:
    """A closed square outline of side a (centre lines)."""
    return strokes([(0, 0, a, 0), (a, 0, a, a), (0, a, a, a), (0, 0, 0, a)], hw, part_index("square"))


def triangle(b: np.ndarray, hw: np.ndarray) -> Drawing:
    """A closed triangle, apex up: base b, 45-degree sides, height b / 2."""
    h = b / 2
    return strokes([(0, h, b, h), (0, h, h, 0), (h, 0, b, h)], hw, part_index("triangle"))


def filled_square(c: np.ndarray, bars: int = 2) -> Drawing:
    """A solid square of side c, hatched: ``bars`` strokes (>= 2 px wide) with HATCH_GAP px between them.

    All its ink is strokes, and the hatching's direction stays visible (a solid block would
    count as one orientation's ink with nothing in the image to show which).
    """
    q = (c - (bars - 1) * HATCH_GAP) / (2 * bars)  # bar half width; square caps reach the two other sides
    rows = [(q, q + j * (2 * q + HATCH_GAP), c - q, q + j * (2 * q + HATCH_GAP)) for j in range(bars)]
    return strokes(rows, q, part_index("filled_square"))


def line(a: np.ndarray, hw: np.ndarray) -> Drawing:
    """One stroke of length a: a part of no type."""
    return strokes([(0, 0, a, 0)], hw, NO_PART)


def transform(d: Drawing, element: np.ndarray, diagonal: np.ndarray | None = None) -> Drawing:
    """Apply a symmetry of the square per image, then move the ink box's corner to the origin.

    ``element`` (n,) in 0..7: mirror x if >= 4, then turn by 90 degrees x (element % 4).
    ``diagonal`` (n,) bool: also turn by 45 degrees (axis strokes become diagonal and back).
    """
    turn = np.radians(90.0 * (element % 4) + (45.0 * diagonal if diagonal is not None else 0.0))
    c, s = np.cos(turn), np.sin(turn)
    mirror = np.where(element >= 4, -1.0, 1.0)
    # (n, 2, 2) rotation after mirroring x; snap cos/sin of multiples of 45 degrees exactly.
    m = np.stack([np.stack([c * mirror, -s], -1), np.stack([s * mirror, c], -1)], axis=-2)
    m = _snap(m)
    pts = d.segs.reshape(d.n, -1, 2)  # (n, 2k, 2)
    turned = np.einsum("nij,npj->npi", m, pts).reshape(d.segs.shape)
    out = Drawing(turned, d.hw, d.part)
    box = out.ink_box()
    return out.shifted(-box[:, 0], -box[:, 1])


def _snap(m: np.ndarray) -> np.ndarray:
    """Entries of a 45-degree-multiple rotation are 0, +-1 or +-sqrt(1/2): remove rounding noise."""
    values = np.array([0.0, 1.0, -1.0, _SQRT_HALF, -_SQRT_HALF])
    return values[np.abs(m[..., None] - values).argmin(-1)]
