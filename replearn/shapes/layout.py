"""Placing items on the canvas without touching, and measuring their exact ink (28-pixel canvas units).

Every item (the object, each distractor) is kept ``GAP`` px from every other by comparing
ink boxes: the object contributes one box per stroke (or its whole box when it is
closed), a distractor its whole box. Because items never touch, an image's ink is the sum
of its items' ink, which :func:`measure` renders exactly, item by item.
"""

from __future__ import annotations

import numpy as np

from replearn.shapes import parts as P
from replearn.shapes.draw import INK_LEVEL, Segments, render

CANVAS = 28
LO, HI = 0.0, 27.0  # ink boxes stay within the pixel centres
GAP = 1.25  # px between any two items' ink boxes
TRIES = 48  # candidate positions per placement
TRY_GROUP = 8  # tried in groups: most images find room in the first group
ITEM_CANVAS = 24  # distractors are measured alone on a canvas this big (their boxes are smaller)
OBJECT_BIT = len(P.PART_TYPES)  # code bit of the object's own strokes; bits 0-5 are the part types
_FAR = 1e4  # an empty box slot: a box far outside the canvas


class Layout:
    """Collects the strokes of n images and, per image, the (GAP-grown) boxes that placed items occupy."""

    def __init__(self, n: int, capacity: int):
        self.chunks: list[tuple] = []
        self.boxes = np.full((n, capacity, 4), _FAR, np.float32)  # (n, M, 4)
        self.count = np.zeros(n, np.int64)

    def add(self, rows: np.ndarray, d: P.Drawing, is_object: bool, closed: bool = False) -> None:
        """Strokes of ``d`` for images ``rows``; ``closed``: keep its whole box free of other items."""
        k = d.segs.shape[1]
        code = np.where(d.part >= 0, 1 << np.maximum(d.part, 0), 0) | ((1 << OBJECT_BIT) if is_object else 0)
        self.chunks.append((np.repeat(rows, k), d.segs.reshape(-1, 4), d.hw.reshape(-1), np.tile(code, len(rows))))
        boxes = d.ink_box()[:, None] if closed else d.stroke_boxes()  # (r, k', 4)
        slots = self.count[rows, None] + np.arange(boxes.shape[1])
        self.boxes[rows[:, None], slots] = boxes + np.array([-GAP, -GAP, GAP, GAP])
        self.count[rows] += boxes.shape[1]

    def place(self, rows: np.ndarray, d: P.Drawing, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random offsets for drawing ``d`` (its box at the origin) whose box keeps GAP from every placed box.

        Returns ok (r,) and the offsets (r, 2): up to TRIES uniform candidates per image, the
        first free one wins.
        """
        size = d.ink_box()[:, 2:]  # (r, 2)
        room = np.maximum(HI - LO - size, 0.0)
        xy = (LO + rng.random((len(rows), TRIES, 2)) * room[:, None, :]).astype(np.float32)  # (r, T, 2)
        box = d.ink_box().astype(np.float32)  # (r, 4) the candidate counts as its whole box
        ok = np.zeros(len(rows), bool)
        ok_xy = np.zeros((len(rows), 2))
        todo = np.flatnonzero((size <= HI - LO).all(-1))
        for g in range(0, TRIES, TRY_GROUP):
            if not len(todo):
                break
            cand = xy[todo, g:g + TRY_GROUP]  # (t, G, 2)
            mine = box[todo, None, None, :] + np.tile(cand, 2)[:, :, None, :]  # (t, G, 1, 4)
            placed = self.boxes[rows[todo], : max(int(self.count[rows[todo]].max()), 1)][:, None]  # (t, 1, M, 4)
            apart = ((mine[..., 0] >= placed[..., 2]) | (mine[..., 2] <= placed[..., 0])
                     | (mine[..., 1] >= placed[..., 3]) | (mine[..., 3] <= placed[..., 1]))
            free = apart.all(-1)  # (t, G)
            hit = free.any(1)
            ok[todo[hit]] = True
            ok_xy[todo[hit]] = cand[hit, free[hit].argmax(1)]
            todo = todo[~hit]
        return ok, ok_xy

    def segments(self) -> Segments:
        image, segs, hw, code = (np.concatenate(c) for c in zip(*self.chunks))
        return Segments(image, segs[:, 0], segs[:, 1], segs[:, 2], segs[:, 3], hw, code)


def measure(items: list[tuple[P.Drawing, np.ndarray]], canvas: int) -> list[np.ndarray]:
    """Exact ink of drawings (boxes at the origin) moved by offsets (r, 2): per item (r, 5) union, H, /, V, \\.

    Only the fractional part of an offset changes the pixels, so each drawing is rendered
    alone on a small canvas (all items in one call).
    """
    flat, start = [], 0
    for d, offset in items:
        local = d.shifted(offset[:, 0] % 1.0, offset[:, 1] % 1.0)
        r, k = local.segs.shape[:2]
        flat.append((start + np.repeat(np.arange(r), k), local.segs.reshape(-1, 4), local.hw.reshape(-1)))
        start += r
    image, segs, hw = (np.concatenate(c) for c in zip(*flat))
    out = render(Segments(image, segs[:, 0], segs[:, 1], segs[:, 2], segs[:, 3], hw, np.zeros(len(image), np.int64)),
                 start, canvas, with_codes=False)
    union = (out.images > INK_LEVEL).reshape(start, -1).sum(1).numpy()
    ink = np.concatenate([union[:, None], out.ink.numpy()], axis=1).astype(float)  # (r, 5)
    bounds = np.cumsum([0] + [len(offset) for _, offset in items])
    return [ink[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def summary(ink: np.ndarray) -> np.ndarray:
    """(n, 5) union, H, /, V, \\ -> (n, 3) union, axis (H + V), diagonal (/ + \\)."""
    return np.stack([ink[:, 0], ink[:, 1] + ink[:, 3], ink[:, 2] + ink[:, 4]], axis=-1)


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Labels in random order where every block of ``num_classes`` images holds each class once.

    Exactly balanced when n is a multiple of num_classes; otherwise the last, partial block
    gives n % num_classes random classes one image more.
    """
    blocks = -(-n // num_classes)
    return np.argsort(rng.random((blocks, num_classes)), axis=1).reshape(-1)[:n]


def scaled(seg: Segments, size: int) -> Segments:
    """The same strokes on a size x size grid (pixel centres: (p + 0.5) * size / 28 - 0.5)."""
    f = size / CANVAS

    def move(v: np.ndarray) -> np.ndarray:
        return (v + 0.5) * f - 0.5

    return Segments(seg.image, move(seg.x1), move(seg.y1), move(seg.x2), move(seg.y2), seg.half_width * f, seg.code)
