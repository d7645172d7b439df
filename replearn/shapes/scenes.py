"""Scenes: one object per image plus distractor parts, laid out without touching, ink budgets matched.

Layout (28-pixel canvas units, scaled to the image size at the end):

- the object gets one of the 8 symmetries of the square (an exactly balanced share of each
  within a class, so horizontal/vertical and the two diagonals are symmetric), then a
  random position leaning towards the sides (so the free room stays in one piece);
- distractors (distractors.py) are parts of other objects and single strokes, placed where
  their box keeps ``GAP`` px from every other item, so they never join the object or each other;
- each image gets distractors until its exact axis (0/90 degree) and diagonal level-1 ink
  reach ``TARGET_INK``: objects with little ink get more distractors, objects without
  diagonal strokes get diagonal ones. Then top-up passes ask more of the classes whose
  means still fall short, so ink and the orientation histogram match across classes
  (measured in tests/shapes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replearn.shapes import parts as P
from replearn.shapes.distractors import KINDS, ROUNDS, FillState, break_ties, fill
from replearn.shapes.draw import Segments
from replearn.shapes.layout import CANVAS, HI, LO, Layout, balanced_labels, measure, summary
from replearn.shapes.objects import BUILDERS, CLASSES, OBJECT_PARTS

HALF_WIDTH = (1.0, 1.3)  # stroke width 2-2.6 px (28-px canvas)
TARGET_INK = np.array([150.0, 42.0])  # per image: axis and diagonal level-1 px at 28 x 28
# Objects whose inside must stay empty (a part there would read as an eye, a pane, a rung);
# the others only keep their strokes clear, so distractors may sit in their open corners.
CLOSED = ("house", "window", "face", "ladder")
TWIN_CLASSES = 2  # labels.STROKE_CLASSES
TOP_UPS = 2  # extra fill passes aimed at the classes whose means fall short
UNION_WEIGHT = 0.8  # top-up: axis ink asked per px of a class's ink shortfall


@dataclass
class Scene:
    """Flat strokes of every image (``segments``, 28-px units) and per-image bookkeeping."""

    segments: Segments
    object_box: np.ndarray  # (n, 4)
    distractors: np.ndarray  # (n,) how many were placed
    ink: np.ndarray  # (n, 3) union, axis, diagonal level-1 pixels at 28 x 28
    twin: np.ndarray  # (n,) target strokes-twin labels (labels.py), balanced within each class


def compose(labels: np.ndarray, rng: np.random.Generator) -> Scene:
    """Objects for ``labels`` (indices into CLASSES), then distractors until the ink budgets are met."""
    n = len(labels)
    hw = rng.uniform(*HALF_WIDTH, n)
    layout = Layout(n, capacity=16 + ROUNDS * (1 + TOP_UPS) + 2)  # object strokes, then one box per distractor
    ink = np.zeros((n, 5))  # exact ink and level-1 pixels per orientation (union, H, /, V, \) at 28 x 28
    object_box = np.zeros((n, 4))
    own = np.zeros((n, len(KINDS)), bool)
    for c, name in enumerate(CLASSES):
        rows = np.flatnonzero(labels == c)
        if not len(rows):
            continue
        element = rng.permutation(np.arange(len(rows)) % 8)  # each symmetry equally often
        d = P.transform(BUILDERS[name](len(rows), rng, hw[rows]), element)
        # Arcsine-distributed position: objects lean to the sides, the free room stays in one piece.
        xy = LO + rng.beta(0.5, 0.5, (len(rows), 2)) * np.maximum(HI - LO - d.ink_box()[:, 2:], 0.0)
        ink[rows] = measure([(d, xy)], CANVAS)[0]
        d = d.shifted(xy[:, 0], xy[:, 1])
        layout.add(rows, d, is_object=True, closed=name in CLOSED)
        object_box[rows] = d.ink_box()
        own[rows, : len(P.PART_TYPES)] = [p in OBJECT_PARTS[name] for p in range(len(P.PART_TYPES))]
    # Strokes-twin labels, balanced within every object class (so independent of it); distractors
    # lean towards them, and generate.py turns each whole image that still misses.
    twin = np.zeros(n, np.int64)
    for c in range(len(CLASSES)):
        rows = np.flatnonzero(labels == c)
        twin[rows] = balanced_labels(len(rows), TWIN_CLASSES, rng)
    state = FillState(layout, ink, own, hw, twin, np.zeros(n, np.int64), np.zeros(n, np.int64))
    fill(state, np.tile(TARGET_INK, (n, 1)), rng)
    break_ties(state, rng)  # while there is room; distractors added later lean the same way
    # Top-up: a class whose mean falls short (its object leaves little room) asks more of the images
    # that still have room, so that class means, not only single images, meet the targets. Junctions
    # count in two orientations' masks but once in the ink, so a class of many junctions (window)
    # reaches the orientation targets with less ink: part of its ink shortfall is asked as axis ink.
    for _ in range(TOP_UPS):
        present = [c for c in range(len(CLASSES)) if (labels == c).any()]
        means = np.stack([summary(ink[labels == c]).mean(0) for c in present])  # (C, 3) union, axis, diagonal
        short = np.zeros((len(CLASSES), 2))
        short[present] = np.maximum(means[:, 1:].mean(0), TARGET_INK) - means[:, 1:]
        short[present, 0] += UNION_WEIGHT * (means[:, 0].mean() - means[:, 0])
        state.fails[:] = 0
        fill(state, TARGET_INK + 2.0 * short[labels], rng)
    break_ties(state, rng)
    return Scene(layout.segments(), object_box, state.placed, summary(ink), twin)
