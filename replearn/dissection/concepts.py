"""Digit-concept masks: for every image, 28x28 pixel masks of edges, strokes, parts and the digit itself.

These are the "concepts" that network dissection scores hidden units against. All
masks are computed from the image alone (levels 1-2) or from the image and its label
(level 3); nothing is learned. The image is first scaled by its own maximum, so the
thresholds below are fractions of the brightest pixel.

Level 1, edges and strokes (y pointing up):

- ``edge_<side>``: the digit's boundary, with its polarity, in 8 direction bins of 45°:
  the side of the stroke the edge bounds (``left``, ``bottom_left``, ``bottom``,
  ``bottom_right``, ``right``, ``top_right``, ``top``, ``top_left``). ``left``/``right``
  edges run vertically, ``top``/``bottom`` horizontally, ``top_left``/``bottom_right``
  along "/" and ``bottom_left``/``top_right`` along "\\" (4 orientations x 2 polarities:
  a ReLU unit responds to one side of a stroke, not both). Sobel gradient of the image
  smoothed with a Gaussian (σ = 0.7 px); a pixel is an edge pixel where the gradient
  magnitude is at least ``EDGE_THRESHOLD`` (half the 4 a sharp unit step gives: a band
  1-2 px wide on each side of a stroke, leaving out its centre line, where the gradient
  vanishes); its side is the gradient's direction (which points into the ink).
- strokes use 4 orientation bins, modulo 180° and named by the direction the stroke
  runs in: ``horizontal`` = within 22.5° of 0°, ``diag_up`` "/" = 45°, ``vertical`` =
  90°, ``diag_down`` "\\" = 135°.
- ``stroke_<bin>``: the stroke's centre line, grown back to stroke width. The ink mask
  (pixel > ``INK_THRESHOLD`` of the maximum) is skeletonized (scikit-image); each
  skeleton pixel gets the principal direction of the skeleton pixels within
  ``ORIENT_RADIUS`` px (the structure tensor of their offsets); the skeleton pixels
  of one bin are dilated by ``STROKE_RADIUS`` px and intersected with the ink mask.

Level 2, parts and shapes, all read off the skeleton after pruning spurs (branches of
at most ``SPUR_LENGTH`` px from a junction to a free end, which skeletons of thick
strokes grow at corners and bumps). Point-like parts are discs of radius
``POINT_RADIUS`` px around the point:

- ``endpoint``: a stroke's free end: a skeleton pixel with one run of skeleton pixels
  around it (crossing number 1) and at most two skeleton neighbours.
- ``junction``: where three or more strokes meet (T, X, Y): a cluster of branch-point
  candidates (crossing number ≥ 3 or ≥ 3 skeleton neighbours) from which at least three
  separate runs of skeleton leave; one point per cluster (candidates within
  ``MERGE_RADIUS`` px merge), at its centre.
- ``corner``: a sharp turn of the skeleton that is not an endpoint or a junction. The
  turn is measured by the centroid of the skeleton pixels within ``CORNER_RADIUS`` px
  relative to their mean distance: 0 on a straight line, cos(a/2) at a corner of angle a
  (0.71 at 90°). Corners are pixels with at least ``CORNER_BEND`` (sharper than about
  120°) that are more than ``CORNER_RADIUS`` px from an endpoint (a stroke's end looks
  one-sided, hence bent) and away from junctions; one point per cluster, at its sharpest
  pixel. Tight arcs (radius ≲ 3 px, e.g. the small loops of an 8) count too: at 28x28
  a corner and a tight bend are the same few pixels.
- ``curve``: curved arcs: the same centroid measure within ``CURVE_RADIUS`` px, taking
  only its part across the local stroke direction (so nearby stroke ends do not count)
  and averaging it along the skeleton (radius 2); runs of at least ``CURVE_MIN_LENGTH``
  skeleton pixels above ``CURVE_BEND`` (arcs of radius up to about 9 px; 90% of the
  skeleton of MNIST 1s stays below), away from junctions and corners, grown to stroke
  width like the strokes.
- ``loop``: enclosed holes (scipy's ``binary_fill_holes`` of the ink mask minus the
  ink, connected components of at least ``LOOP_MIN_AREA`` px) together with their
  ring: the ink within ``STROKE_RADIUS`` + 1 px of the hole.

Level 3, digits (objects on Fashion-MNIST): ``digit_<c>`` (or ``class_<name>`` when
class names are not digits) is the foreground of images of class c and empty in every
other image. The foreground is the ink mask dilated by 1 px, together with every pixel
above ``FOREGROUND_THRESHOLD`` of the maximum (on MNIST this adds 0.02% of pixels; on
Fashion-MNIST it adds the dark parts of a garment that the ink threshold misses).
On Fashion-MNIST the level-1/2 masks are still computed, but the skeleton of a filled
garment is not a pen stroke: its "strokes" and "parts" are shape-medial-axis artefacts.

All morphology is scipy.ndimage / scikit-image, run on the whole stack at once
(structuring elements are 2-D, so images never touch; the larger window sums run
through scipy's FFT convolution); only skeletonization loops over images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

# scipy.signal and scikit-image are imported where masks are built: a run whose masks come from the
# cache (replearn.dissection.concept_cache) never needs them, and they take ~0.7 s to import.
from replearn.errors import ReplearnError

LEVELS = {1: "edges & strokes", 2: "parts & shapes", 3: "digits"}
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


@dataclass(frozen=True)
class Concept:
    """One concept: its name (``edge_vertical``, ``loop``, ``digit_3``, ...) and level (1, 2 or 3)."""

    name: str
    level: int


def class_concept_name(class_name: str) -> str:
    """``digit_3`` for a class named "3", else ``class_<sanitized name>`` (``class_t_shirt_top``)."""
    if re.fullmatch(r"\d+", class_name.strip()):
        return f"digit_{class_name.strip()}"
    return "class_" + (re.sub(r"[^0-9a-z]+", "_", class_name.lower()).strip("_") or "unnamed")


def default_class_names(labels: torch.Tensor) -> list[str]:
    """"0".."9" (MNIST-like), or more digits if a label is larger: a subset of the digits keeps every class concept."""
    top = int(labels.max()) + 1 if labels.numel() else 0
    return [str(i) for i in range(max(10, top))]


def concept_list(class_names: list[str]) -> list[Concept]:
    """Level-1 concepts, then level-2, then one level-3 concept per class (the order of the mask axis)."""
    level1 = [Concept(f"edge_{side}", 1) for side in EDGE_SIDES] + [Concept(f"stroke_{o}", 1) for o in ORIENTATIONS]
    level2 = [Concept(p, 2) for p in PARTS]
    level3 = [Concept(class_concept_name(c), 3) for c in class_names]
    names = [c.name for c in level3]
    if len(set(names)) != len(names):
        raise ReplearnError(f"class names {class_names} give duplicate concept names {names}; rename the classes")
    return level1 + level2 + level3


@dataclass
class ConceptMasks:
    """Masks bool (N, K, H, W) for N images and the K concepts of ``concepts`` (same order)."""

    masks: torch.Tensor
    concepts: list[Concept]

    def names(self) -> list[str]:
        """Concept names, in mask order."""
        return [c.name for c in self.concepts]

    def levels(self) -> torch.Tensor:
        """int64 (K,): each concept's level."""
        return torch.tensor([c.level for c in self.concepts], dtype=torch.int64)

    def __len__(self) -> int:
        return self.masks.shape[0]

    def subset(self, index) -> ConceptMasks:
        """The masks of some images (any index a tensor accepts on its first axis)."""
        masks = self.masks[index]
        if masks.dim() == 3:  # an integer index keeps the image axis
            masks = masks.unsqueeze(0)
        return ConceptMasks(masks, self.concepts)


# ----------------------------------------------------------------------------- helpers


def _as_float_images(images: torch.Tensor) -> np.ndarray:
    """uint8 or float (N, 1, H, W) / (N, H, W) -> float32 (N, H, W), each image scaled by its maximum."""
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3:
        raise ReplearnError(f"images have shape {tuple(images.shape)}; expected (N, 1, H, W) or (N, H, W) grayscale")
    x = images.detach().cpu().float().numpy()
    if x.size and float(x.min()) < 0:
        raise ReplearnError(f"images have negative values (min {float(x.min()):.3g}): pass raw uint8 images or floats "
                            "in [0, 1], not normalized ones")
    if images.dtype == torch.uint8:
        x = x / 255.0
    peak = x.reshape(len(x), -1).max(axis=1) if len(x) else np.zeros(0)
    scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return (x / scale[:, None, None]).astype(np.float32)


def _plane(structure2d: np.ndarray) -> np.ndarray:
    """A 2-D structuring element as (1, h, w), so it acts on each image of a stack separately."""
    return np.asarray(structure2d, bool)[None]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    from skimage.morphology import disk

    return ndi.binary_dilation(mask, structure=_plane(disk(radius))) if radius > 0 else mask


def _correlate(stack: np.ndarray, kernels: list[np.ndarray]) -> list[np.ndarray]:
    """Correlate every image of a float stack (N, H, W) with each odd-sized 2-D kernel (zero outside).

    The same as ``scipy.ndimage.correlate(..., mode="constant")`` per image (to float
    rounding), but through the FFT: the larger windows (up to 13x13) are many times faster.
    """
    from scipy.signal import fftconvolve

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
    core = _dilate(candidates, 1) & skel
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
    """One point per cluster of candidate pixels (clusters = within ``merge_radius`` px): the lowest ``score``, else the centre."""
    points = np.zeros_like(candidates)
    if not candidates.any():
        return points
    grown = _dilate(candidates, merge_radius // 2 + merge_radius % 2) if merge_radius > 0 else candidates
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


def _analyse(x: np.ndarray) -> dict[str, np.ndarray]:
    """All level-1/2 masks and part points for float images (N, H, W) scaled to max 1."""
    from skimage.morphology import disk, skeletonize

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
        return _dilate(centre_line, STROKE_RADIUS) & ink

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
    away = skel & ~_dilate(endpoints, CORNER_RADIUS) & ~_dilate(branch_pixels, CORNER_RADIUS - 1)
    corners = _cluster_points(away & (sharpness >= CORNER_BEND), MERGE_RADIUS, score=-sharpness)
    # Curves: the centroid offset across the local stroke direction (along it is just a nearby stroke end).
    bx, by, _ = _bend(skel, CURVE_RADIUS)
    across = np.abs(-np.sin(stroke_angle) * bx + np.cos(stroke_angle) * by) * skel
    # averaged along the skeleton (radius 2): one pixel's value is noisy on a 1-px-wide digital curve
    window = disk(2)[None].astype(np.float32)
    (summed,) = _correlate(across.astype(np.float32), [window[0]])
    (count,) = _correlate(skel.astype(np.float32), [window[0]])
    across = summed / np.maximum(count, 1.0)
    bent = (skel & (across >= CURVE_BEND) & ~_dilate(branch_pixels, POINT_RADIUS + 1)
            & ~_dilate(corners, POINT_RADIUS + 1))
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

    out["endpoint"] = _dilate(endpoints, POINT_RADIUS)
    out["junction"] = _dilate(junctions, POINT_RADIUS)
    out["corner"] = _dilate(corners, POINT_RADIUS)
    out["curve"] = grow(arcs)
    out["loop"] = holes | (_dilate(holes, STROKE_RADIUS + 1) & ink)
    out["_ink"] = ink
    out["_skeleton"] = skel
    out["_points"] = {"endpoints": endpoints, "junctions": junctions, "corners": corners, "loops": loops_per_image}
    return out


def part_points(image) -> dict:
    """Parts of one (H, W) image: ``{"endpoints": [(y, x), ...], "junctions": [...], "corners": [...], "loops": int}``."""
    image = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image
    if image.dim() != 2:
        raise ReplearnError(f"part_points takes one (H, W) image; got shape {tuple(image.shape)}")
    points = _analyse(_as_float_images(image[None]))["_points"]
    result = {key: [tuple(int(v) for v in p[1:]) for p in np.argwhere(points[key])] for key in ("endpoints", "junctions", "corners")}
    result["loops"] = int(points["loops"][0])
    return result


def part_counts(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image counts of endpoints, junctions, corners and loops: int64 (N,) each, for a stack (N, 1, H, W)."""
    points = _analyse(_as_float_images(images))["_points"]
    counts = {key: torch.from_numpy(points[key].sum(axis=(1, 2)).astype(np.int64)) for key in ("endpoints", "junctions", "corners")}
    counts["loops"] = torch.from_numpy(points["loops"].astype(np.int64))
    return counts


def build_concept_masks(images: torch.Tensor, labels: torch.Tensor, class_names: list[str] | None = None,
                        progress: bool = False, chunk: int = 1000) -> ConceptMasks:
    """Masks of every concept of :func:`concept_list` for uint8 (or [0, 1] float) images (N, 1, H, W) with labels (N,).

    ``class_names`` defaults to the digits "0".."9". Works in chunks of ``chunk`` images to bound memory.
    """
    labels = torch.as_tensor(labels).long().reshape(-1)
    n = images.shape[0] if hasattr(images, "shape") else len(images)
    if n == 0:
        raise ReplearnError("the probe set is empty; pass at least one image")
    if labels.numel() != n:
        raise ReplearnError(f"{n} images but {labels.numel()} labels; pass one label per image")
    class_names = default_class_names(labels) if class_names is None else [str(c) for c in class_names]
    if int(labels.min()) < 0 or int(labels.max()) >= len(class_names):
        raise ReplearnError(f"labels run from {int(labels.min())} to {int(labels.max())} but there are {len(class_names)} class names")
    concepts = concept_list(class_names)
    x_all = _as_float_images(images)
    h, w = x_all.shape[1:]
    masks = torch.zeros((n, len(concepts), h, w), dtype=torch.bool)
    level12 = [c.name for c in concepts if c.level < 3]
    starts = range(0, n, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="concept masks", unit="chunk")
    labels_np = labels.numpy()
    for start in starts:
        stop = min(start + chunk, n)
        parts = _analyse(x_all[start:stop])
        for k, name in enumerate(level12):
            masks[start:stop, k] = torch.from_numpy(parts[name])
        # the ink grown by 1 px, plus any fainter pixel of the object (dark cloth on Fashion-MNIST)
        digit = torch.from_numpy(_dilate(parts["_ink"], 1) | (x_all[start:stop] > FOREGROUND_THRESHOLD))
        rows = torch.arange(stop - start)
        masks[start + rows, len(level12) + torch.from_numpy(labels_np[start:stop])] = digit
    return ConceptMasks(masks, concepts)
