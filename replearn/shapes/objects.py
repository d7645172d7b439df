"""Level-3 objects: each class is an ARRANGEMENT of level-2 parts (28-pixel canvas units).

Every builder takes the number of images, a numpy Generator and the per-image stroke
half width (n,), and returns the object in its canonical pose (top-left at the origin).
Part types repeat across classes (squares in house, window and face; triangles in house
and tree; L-corners in stairs and arrow; T-junctions in ladders), and
every class also carries other classes' parts as distractors (scenes.py), so what tells
the classes apart is where the parts sit relative to each other.
"""

from __future__ import annotations

import numpy as np

from replearn.shapes.parts import NO_PART, Drawing, filled_square, part_index, square, strokes, triangle, x_junction

CLASSES = ("house", "window", "face", "ladder", "stairs", "arrow", "checkerboard", "tree")


def house(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """A square under a triangle roof whose base is the square's top side."""
    a = rng.uniform(9.0, 11.0, n)
    return triangle(a, hw) + square(a, hw).shifted(np.zeros(n), a / 2)


def window(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """A square divided into four panes by a cross whose arms end on its sides."""
    a = rng.uniform(8.5, 10.0, n)
    return square(a, hw) + x_junction(a, hw)


def face(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """An outline square holding two short upright strokes (eyes) above a horizontal mouth."""
    a = rng.uniform(10.5, 12.0, n)
    eyes = [(f * a, 0.25 * a, f * a, 0.42 * a) for f in (0.32, 0.68)]
    mouth = [(0.28 * a, 0.72 * a, 0.72 * a, 0.72 * a)]
    return square(a, hw) + strokes(eyes + mouth, hw, NO_PART)


def ladder(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """Two parallel rails joined by three evenly spaced rungs (six T-junctions)."""
    length = rng.uniform(13.0, 16.0, n)
    w = rng.uniform(5.5, 7.5, n)
    rails = [(0, 0, 0, length), (w, 0, w, length)]
    rungs = [(0, length * f, w, length * f) for f in (0.2, 0.5, 0.8)]
    return strokes(rails + rungs, hw, part_index("t_junction"))


def stairs(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """Three steps: alternating risers and treads, a chain of L-corners."""
    s = rng.uniform(4.5, 5.5, n)
    points = [(0, 3), (0, 2), (1, 2), (1, 1), (2, 1), (2, 0), (3, 0)]
    segs = [(s * x1, s * y1, s * x2, s * y2) for (x1, y1), (x2, y2) in zip(points[:-1], points[1:])]
    return strokes(segs, hw, part_index("l_corner"))


def arrow(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """A shaft ending in a V head (an L-corner turned by 45 degrees) at its tip."""
    length = rng.uniform(14.0, 17.0, n)
    h = rng.uniform(3.5, 4.5, n)
    shaft = strokes([(0, h, length, h)], hw, NO_PART)
    head = strokes([(length - h, 0, length, h), (length - h, 2 * h, length, h)], hw, part_index("l_corner"))
    return shaft + head


def checkerboard(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """Five filled squares on alternate cells of a 3 x 3 grid, meeting at their corners."""
    c = rng.uniform(5.0, 5.3, n)
    cell = filled_square(c, bars=2)
    out = None
    for i in range(3):
        for j in range(3):
            if (i + j) % 2 == 0:
                placed = cell.shifted(i * c, j * c)
                out = placed if out is None else out + placed
    return out


def tree(n: int, rng: np.random.Generator, hw: np.ndarray) -> Drawing:
    """A triangle (crown) standing on a vertical trunk from the middle of its base."""
    b = rng.uniform(9.0, 11.0, n)
    trunk = rng.uniform(6.0, 8.0, n)
    return triangle(b, hw) + strokes([(b / 2, b / 2, b / 2, b / 2 + trunk)], hw, NO_PART)


BUILDERS = {"house": house, "window": window, "face": face, "ladder": ladder, "stairs": stairs, "arrow": arrow,
            "checkerboard": checkerboard, "tree": tree}
OBJECT_PARTS = {name: set() for name in CLASSES}  # filled in below: the part types each object is made of


def _object_parts() -> None:
    rng = np.random.default_rng(0)
    for name in CLASSES:
        d = BUILDERS[name](1, rng, np.ones(1))
        OBJECT_PARTS[name] = {int(p) for p in d.part if p != NO_PART}


_object_parts()
