"""The morphology behind the digit-concept masks: ink, skeleton, stroke directions, edges and part points.

Runs on a whole stack (N, H, W) of float images scaled to max 1 (structuring elements are 2-D, so
images never touch). scipy.signal and scikit-image are imported inside the functions that use them: a
run whose masks come from the cache (replearn.dissection.concept_cache) never needs them, and they
take ~0.7 s to import. The concept names and levels are in :mod:`replearn.dissection.concepts`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

ORIENTATIONS = ("horizontal", "diag_up", "vertical", "diag_down")  # centred at 0, 45, 90, 135 degrees
# Edges keep their polarity (a ReLU unit responds to one side of a stroke, not both): named by the
# side of the stroke they bound, in order of the gradient's direction (towards the ink) 0, 45, ... 315
# degrees. left/right edges run vertically, top/bottom horizontally, top_left/bottom_right along "/".
EDGE_SIDES = ("left", "bottom_left", "bottom", "bottom_right", "right", "top_right", "top", "top_left")
PARTS = ("endpoint", "junction", "corner", "curve", "loop")

INK_THRESHOLD = 0.5  # ink = pixel > this fraction of the image's maximum
FOREGROUND_THRESHOLD = 0.1  # level 3 also takes fainter pixels above this (MNIST: +0.02% of pixels)
EDGE_SIGMA = 0.7  # light smoothing before the Sobel gradient, in px
EDGE_THRESHOLD = 2.0  # Sobel magnitude on the max-scaled image: half a sharp unit step (4); a 1-2 px band
ORIENT_RADIUS = 2  # skeleton neighbourhood for a stroke's local direction
CORNER_RADIUS = 4  # skeleton neighbourhood for corners
CORNER_BEND = 0.5  # corners sharper than about 120 degrees
CURVE_RADIUS = 6  # skeleton neighbourhood for curvature
CURVE_BEND = 0.22  # arcs of radius up to about 9 px; 90% of the skeleton of MNIST 1s stays below
CURVE_MIN_LENGTH = 5
STROKE_RADIUS = 1  # skeleton -> stroke width (MNIST strokes are 2-4 px wide)
POINT_RADIUS = 2
MERGE_RADIUS = 2
SPUR_LENGTH = 3
LOOP_MIN_AREA = 3

_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = True  # 8-connectivity inside each image, none across the stack




def _plane(structure2d: np.ndarray) -> np.ndarray:
    """A 2-D structuring element as (1, h, w), so it acts on each image of a stack separately."""
    return np.asarray(structure2d, bool)[None]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    from skimage.morphology import disk  # lazy: see the module docstring

    return ndi.binary_dilation(mask, structure=_plane(disk(radius))) if radius > 0 else mask


def _correlate(stack: np.ndarray, kernels: list[np.ndarray]) -> list[np.ndarray]:
    """Correlate every image of a float stack (N, H, W) with each odd-sized 2-D kernel (zero outside).

    The same as ``scipy.ndimage.correlate(..., mode="constant")`` per image (to float
    rounding), but through the FFT: the larger windows (up to 13x13) are many times faster.
    """
    from scipy.signal import fftconvolve  # lazy: see the module docstring

    stack = np.asarray(stack, dtype=np.float32)
    return [fftconvolve(stack, np.asarray(k, np.float32)[None, ::-1, ::-1], mode="same", axes=(1, 2)) for k in kernels]


def _orientation_bin(angle: np.ndarray) -> np.ndarray:
    """Angle in radians (x right, y up) -> bin 0..3 (horizontal, /, vertical, \\), modulo 180 degrees."""
    degrees = np.rad2deg(angle) % 180.0
    return (np.floor((degrees + 22.5) / 45.0).astype(np.int64)) % 4


def _ring(mask: np.ndarray) -> list[np.ndarray]:
    """The 8 neighbours of every pixel, in cyclic order (N, NE, E, SE, S, SW, W, NW), zero outside."""
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    offsets = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    return [p[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in offsets]


def _crossing_number(skel: np.ndarray) -> np.ndarray:
    """Number of separate runs of skeleton pixels around each pixel: 1 = end, 2 = path, >= 3 = branch point."""
    ring = _ring(skel)
    return sum((~ring[i] & ring[(i + 1) % 8]).astype(np.int8) for i in range(8))


def _stroke_direction(skel: np.ndarray, radius: int) -> np.ndarray:
    """Principal direction (radians, y up, modulo pi) of the skeleton pixels within ``radius`` of each pixel."""
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float32)
    window = (dy**2 + dx**2) <= radius**2 + 0.5
    up = -dy  # image rows grow downwards; angles are measured with y up
    s = skel.astype(np.float32)
    # integer sums: rounding away the FFT's float noise keeps ties at bin edges exact
    sxx, syy, sxy = (np.rint(v) for v in _correlate(s, [dx * dx * window, up * up * window, dx * up * window]))
    return 0.5 * np.arctan2(2 * sxy, sxx - syy)


_SQUARE = np.ones((1, 3, 3), bool)


def _neighbour_count(skel: np.ndarray) -> np.ndarray:
    kernel = np.ones((1, 3, 3), np.int16)
    kernel[0, 1, 1] = 0
    return ndi.correlate(skel.astype(np.int16), kernel, mode="constant")


def _topology(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Endpoints and junction regions of a skeleton stack.

    A junction region is a cluster of branch-point candidates (crossing number >= 3 or
    >= 3 skeleton neighbours, grown by 1 px along the skeleton) from which three or more
    separate runs of skeleton leave; counting the runs leaving the cluster, not the runs
    around one pixel, also finds crossings that skeletonize draws as a small blob.
    """
    neighbours = _neighbour_count(skel)
    crossing = _crossing_number(skel)
    candidates = skel & ((crossing >= 3) | (neighbours >= 3))
    core = dilate(candidates, 1) & skel
    core_labels, _ = ndi.label(core, structure=_PLANE)
    exits = skel & ~core & ndi.binary_dilation(core, structure=_SQUARE)
    exit_labels, n_exits = ndi.label(exits, structure=_PLANE)
    owner = ndi.maximum_filter(core_labels, footprint=_SQUARE)  # the cluster an exit run leaves from
    pairs = np.unique(owner[exits].astype(np.int64) * (n_exits + 1) + exit_labels[exits])
    runs_leaving = np.bincount(pairs // (n_exits + 1), minlength=int(core_labels.max()) + 1)
    runs_leaving[0] = 0
    junction_region = core & (runs_leaving[core_labels] >= 3)
    endpoints = skel & (crossing == 1) & (neighbours <= 2) & ~junction_region
    return endpoints, junction_region


def _prune(skel: np.ndarray) -> np.ndarray:
    """Remove spurs: branches of at most ``SPUR_LENGTH`` px that run from a junction to a free end.

    Skeletons of thick strokes grow such spurs at sharp corners and bumps; they would
    count as extra endpoints and junctions. One-pixel stubs left on the main path go too.
    """
    skel = skel.copy()
    for _ in range(2):
        endpoints, junction_region = _topology(skel)
        branches = skel & ~junction_region
        labels, count = ndi.label(branches, structure=_PLANE)
        lengths = np.bincount(labels.ravel(), minlength=count + 1)
        has_end = np.bincount(labels[endpoints], minlength=count + 1) > 0
        touches = np.zeros(count + 1, bool)
        touches[labels[branches & ndi.binary_dilation(junction_region, structure=_SQUARE)]] = True
        spur = has_end & touches & (lengths <= SPUR_LENGTH)
        spur[0] = False
        skel &= ~spur[labels]
        neighbours = _neighbour_count(skel)
        busy = ndi.binary_dilation(skel & (neighbours >= 3), structure=_SQUARE)
        skel &= ~(skel & (neighbours == 1) & busy)
    return skel


def _bend(skel: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How the skeleton bends around each pixel, from the centroid of the skeleton pixels within ``radius``.

    Returns the centroid offset (x, y-up components) divided by the summed distances; its length is 0 on a
    straight line through the pixel, cos(a/2) at the vertex of a corner of angle a (0.71 at 90 degrees),
    ≈ radius / (3 R) on an arc of radius R, and large near a stroke's end.
    """
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float32)
    dist = np.hypot(dy, dx)
    window = (dist <= radius + 0.5).astype(np.float32)
    s = skel.astype(np.float32)
    sx, sy, total = _correlate(s, [window * dx, window * dy, window * dist])
    sy_up, total = -sy, np.maximum(total, 1e-6)
    return sx / total, sy_up / total, total


def _cluster_points(candidates: np.ndarray, merge_radius: int, score: np.ndarray | None = None) -> np.ndarray:
    """One point per cluster of candidate pixels (within ``merge_radius`` px): the lowest ``score``, else the centre."""
    points = np.zeros_like(candidates)
    if not candidates.any():
        return points
    grown = dilate(candidates, merge_radius // 2 + merge_radius % 2) if merge_radius > 0 else candidates
    labels, count = ndi.label(grown, structure=_PLANE)
    labels = np.where(candidates, labels, 0)
    index = np.arange(1, count + 1)
    if score is None:
        # the candidate pixel nearest its cluster's centre of mass
        centres = np.zeros((count + 1, 3))
        centres[1:] = np.asarray(ndi.center_of_mass(candidates, labels, index)).reshape(-1, 3)
        coords = np.indices(candidates.shape).transpose(1, 2, 3, 0)  # (N, H, W, 3)
        score = np.where(candidates, ((coords - centres[labels]) ** 2).sum(-1), np.inf)
    chosen = np.asarray(ndi.minimum_position(score, labels, index)).reshape(-1, 3)
    points[tuple(chosen.T)] = True
    return points


# ----------------------------------------------------------------------------- the analysis


def analyse(x: np.ndarray) -> dict[str, np.ndarray]:
    """All level-1/2 masks and part points for float images (N, H, W) scaled to max 1."""
    from skimage.morphology import disk, skeletonize  # lazy: see the module docstring

    ink = x > INK_THRESHOLD  # (N, H, W)

    # Level 1: edges from the smoothed image's Sobel gradient (per image: no smoothing across the stack).
    smooth = ndi.gaussian_filter(x, sigma=(0, EDGE_SIGMA, EDGE_SIGMA))
    gx = ndi.correlate1d(ndi.correlate1d(smooth, [-1, 0, 1], axis=2), [1, 2, 1], axis=1)
    gy_up = -ndi.correlate1d(ndi.correlate1d(smooth, [-1, 0, 1], axis=1), [1, 2, 1], axis=2)
    magnitude = np.hypot(gx, gy_up)
    edge = magnitude >= EDGE_THRESHOLD
    # The gradient points into the ink: 0 degrees = ink to the right = the stroke's left edge.
    edge_side = (np.floor((np.rad2deg(np.arctan2(gy_up, gx)) % 360.0 + 22.5) / 45.0).astype(np.int64)) % 8

    skel = _prune(np.stack([skeletonize(m) for m in ink]) if len(ink) else ink.copy())
    stroke_angle = _stroke_direction(skel, ORIENT_RADIUS)
    stroke_bin = _orientation_bin(stroke_angle)

    def grow(centre_line: np.ndarray) -> np.ndarray:
        return dilate(centre_line, STROKE_RADIUS) & ink

    out = {}
    for b, side in enumerate(EDGE_SIDES):
        out[f"edge_{side}"] = edge & (edge_side == b)
    for b, name in enumerate(ORIENTATIONS):
        out[f"stroke_{name}"] = grow(skel & (stroke_bin == b))

    # Level 2: parts from the skeleton's topology and curvature.
    endpoints, branch_pixels = _topology(skel)
    junctions = _cluster_points(branch_pixels, MERGE_RADIUS)
    # Corners: a sharp turn, away from stroke ends (where the one-sided window also looks bent) and joins.
    bx, by, _ = _bend(skel, CORNER_RADIUS)
    sharpness = np.hypot(bx, by)
    away = skel & ~dilate(endpoints, CORNER_RADIUS) & ~dilate(branch_pixels, CORNER_RADIUS - 1)
    corners = _cluster_points(away & (sharpness >= CORNER_BEND), MERGE_RADIUS, score=-sharpness)
    # Curves: the centroid offset across the local stroke direction (along it is just a nearby stroke end).
    bx, by, _ = _bend(skel, CURVE_RADIUS)
    across = np.abs(-np.sin(stroke_angle) * bx + np.cos(stroke_angle) * by) * skel
    # averaged along the skeleton (radius 2): one pixel's value is noisy on a 1-px-wide digital curve
    window = disk(2)[None].astype(np.float32)
    (summed,) = _correlate(across.astype(np.float32), [window[0]])
    (count,) = _correlate(skel.astype(np.float32), [window[0]])
    across = summed / np.maximum(count, 1.0)
    bent = (skel & (across >= CURVE_BEND) & ~dilate(branch_pixels, POINT_RADIUS + 1)
            & ~dilate(corners, POINT_RADIUS + 1))
    labels, count = ndi.label(bent, structure=_PLANE)
    lengths = np.bincount(labels.ravel(), minlength=count + 1)
    lengths[0] = 0
    arcs = lengths[labels] >= CURVE_MIN_LENGTH

    filled = ndi.binary_fill_holes(ink, structure=_PLANE)
    holes = filled & ~ink
    labels, count = ndi.label(holes, structure=_PLANE)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = 0
    holes = areas[labels] >= LOOP_MIN_AREA
    image_of_hole = np.zeros(count + 1, dtype=np.int64)
    where = np.nonzero(labels)
    image_of_hole[labels[where]] = where[0]
    kept = np.nonzero(areas >= LOOP_MIN_AREA)[0]
    loops_per_image = np.bincount(image_of_hole[kept], minlength=len(x))

    out["endpoint"] = dilate(endpoints, POINT_RADIUS)
    out["junction"] = dilate(junctions, POINT_RADIUS)
    out["corner"] = dilate(corners, POINT_RADIUS)
    out["curve"] = grow(arcs)
    out["loop"] = holes | (dilate(holes, STROKE_RADIUS + 1) & ink)
    out["_ink"] = ink
    out["_skeleton"] = skel
    out["_points"] = {"endpoints": endpoints, "junctions": junctions, "corners": corners, "loops": loops_per_image}
    return out
