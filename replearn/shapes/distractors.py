"""Distractors: parts of other objects (and single strokes) added until an image's ink budgets are met.

Each round gives every image that still falls short at most one distractor: its pose
(axis or turned by 45 degrees) follows which of the axis/diagonal budgets falls shorter,
its kind is drawn at random (kinds the object is made of less often, so every part type
appears in every class), its size is chosen to fill the shortfall, and it is turned so it
adds to the orientation its image's strokes-twin label favours (labels.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replearn.shapes import parts as P
from replearn.shapes.layout import ITEM_CANVAS, Layout, measure, summary

KINDS = P.PART_TYPES + ("line",)
SIZES = {"l_corner": (4.0, 9.0), "t_junction": (5.0, 10.0), "x_junction": (5.0, 9.0), "square": (5.0, 9.0),
         "triangle": (6.0, 12.0), "filled_square": (5.0, 7.0), "line": (4.0, 12.0)}
DIAGONAL_SHRINK = 0.75  # a part turned by 45 degrees needs sqrt(2) more room
ROUNDS = 10
MIN_DEFICIT = 12.0  # px: an image this close to both targets gets no more distractors
MAX_FAILS = 4  # placements that found no room before an image stops trying
OWN_PART_WEIGHT = 0.25  # relative chance of a distractor of a part type the object already has
TRIANGLE_ALONE = 0.3  # relative chance of a triangle where only axis or only diagonal ink is wanted
TIE_MARGIN = 6  # px: images whose horizontal and vertical ink are closer get a tie-breaking stroke
TIE_STROKE = (3.0, 5.0)  # its length


def build(kind: str, s: np.ndarray, hw: np.ndarray, rng: np.random.Generator) -> P.Drawing:
    """A distractor of ``kind`` and size s (n,) in its canonical pose."""
    n = len(s)
    if kind == "l_corner":
        return P.l_corner(s, s * rng.uniform(0.6, 1.0, n), hw)
    if kind == "t_junction":
        return P.t_junction(s, s * rng.uniform(0.5, 0.8, n), hw)
    if kind == "x_junction":
        return P.x_junction(s, hw, s * rng.uniform(0.6, 1.0, n))
    if kind == "square":
        return P.square(s, hw)
    if kind == "triangle":
        return P.triangle(s, hw)
    if kind == "filled_square":
        return P.filled_square(s, bars=2)
    return P.line(s, hw)


@dataclass
class FillState:
    """What the rounds update: the layout, exact ink (n, 5: union, H, /, V, \\), counters."""

    layout: Layout
    ink: np.ndarray
    own: np.ndarray  # (n, len(KINDS)) bool: kinds the object is made of
    hw: np.ndarray  # (n,) stroke half width
    twin: np.ndarray  # (n,) the strokes-twin label each image leans to (0 horizontal, 1 vertical)
    placed: np.ndarray  # (n,) distractors so far
    fails: np.ndarray  # (n,) placements that found no room


def lean(d: P.Drawing, twin: np.ndarray) -> P.Drawing:
    """A quarter turn where that makes a drawing add to the orientation ``twin`` (n,) favours."""
    per = d.orientation_ink()
    vertical_lead = per[:, 2] - per[:, 0]
    return P.transform(d, np.where((np.abs(vertical_lead) > 1e-6) & ((vertical_lead > 0) != (twin == 1)), 1, 0))


def fill(st: FillState, target: np.ndarray, rng: np.random.Generator) -> None:
    """Add distractors, ROUNDS at most, until each image's (axis, diagonal) ink reaches ``target`` (n, 2)."""
    for _ in range(ROUNDS):
        deficit = np.maximum(target - summary(st.ink)[:, 1:], 0.0)  # (n, 2) axis, diagonal
        active = np.flatnonzero((deficit.sum(1) > MIN_DEFICIT) & (st.fails < MAX_FAILS))
        if not len(active):
            return
        need = deficit[active]
        diagonal = rng.random(len(active)) * need.sum(1) < need[:, 1]
        weights = np.where(st.own[active], OWN_PART_WEIGHT, 1.0)
        # A triangle brings axis and diagonal strokes in either pose: rarer where only one is wanted
        # (so it does not overshoot the other), but never absent, so that triangles are in every class.
        weights[:, KINDS.index("triangle")] *= np.where(need.min(1) > MIN_DEFICIT, 1.0, TRIANGLE_ALONE)
        kinds = (weights.cumsum(1) / weights.sum(1, keepdims=True) < rng.random((len(active), 1))).sum(1)
        element = rng.integers(0, 8, len(active))
        done = []
        for k, kind in enumerate(KINDS):
            sel = np.flatnonzero(kinds == k)
            if not len(sel):
                continue
            rows = active[sel]
            lo, hi = SIZES[kind]
            scale = np.where(diagonal[sel], DIAGONAL_SHRINK, 1.0)
            # Size: interpolate between the smallest and the largest part's ink towards the deficit,
            # with some randomness, and smaller after each failed placement.
            want = np.where(diagonal[sel], need[sel, 1], need[sel, 0])
            small = build(kind, lo * scale, st.hw[rows], np.random.default_rng(0)).ink().sum(1)
            large = build(kind, hi * scale, st.hw[rows], np.random.default_rng(0)).ink().sum(1)
            frac = np.clip((want - small) / np.maximum(large - small, 1e-6), 0.0, 1.0)
            frac = np.clip(frac * rng.uniform(0.8, 1.2, len(sel)) * 0.6 ** st.fails[rows], 0.0, 1.0)
            d = build(kind, (lo + frac * (hi - lo)) * scale, st.hw[rows], rng)
            d = lean(P.transform(d, element[sel], diagonal[sel]), st.twin[rows])
            ok, xy = st.layout.place(rows, d, rng)
            st.fails[rows[~ok]] += 1
            if ok.any():
                d = P.Drawing(d.segs[ok], d.hw[ok], d.part)
                done.append((rows[ok], d, xy[ok]))
                st.layout.add(rows[ok], d.shifted(xy[ok, 0], xy[ok, 1]), is_object=False, closed=True)
                st.placed[rows[ok]] += 1
        if done:  # each image got at most one distractor this round: measure them all at once
            for (rows, _, _), ink in zip(done, measure([(d, xy) for _, d, xy in done], ITEM_CANVAS)):
                st.ink[rows] += ink


def break_ties(st: FillState, rng: np.random.Generator) -> None:
    """Where horizontal and vertical ink are within TIE_MARGIN px, add one short stroke of the
    orientation the image's twin label favours, so the twin's rule never rests on a near tie
    (symmetric scenes, a window beside a diamond say, would tie, and a tie always goes one way)."""
    rows = np.flatnonzero(np.abs(st.ink[:, 1] - st.ink[:, 3]) < TIE_MARGIN)
    if not len(rows):
        return
    d = lean(P.line(rng.uniform(*TIE_STROKE, len(rows)), st.hw[rows]), st.twin[rows])
    ok, xy = st.layout.place(rows, d, rng)
    if ok.any():
        d = P.Drawing(d.segs[ok], d.hw[ok], d.part)
        st.layout.add(rows[ok], d.shifted(xy[ok, 0], xy[ok, 1]), is_object=False, closed=True)
        st.ink[rows[ok]] += measure([(d, xy[ok])], ITEM_CANVAS)[0]
        st.placed[rows[ok]] += 1
