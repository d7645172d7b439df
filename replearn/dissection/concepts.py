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

from replearn.dissection.morphology import EDGE_SIDES, FOREGROUND_THRESHOLD, ORIENTATIONS, PARTS, analyse, dilate
from replearn.errors import ReplearnError
from replearn.progress import progress as progress_bar

# Level 3 is the whole object: a digit on MNIST, a class of objects on data=shapes (whose level 1 is its lines).
LEVELS = {1: "edges & strokes", 2: "parts & shapes", 3: "objects (digits)"}
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


def part_points(image) -> dict:
    """Parts of one (H, W) image: ``{"endpoints": [(y, x), ...], "junctions": [...], "corners": [...], "loops": int}``."""
    image = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image
    if image.dim() != 2:
        raise ReplearnError(f"part_points takes one (H, W) image; got shape {tuple(image.shape)}")
    points = analyse(_as_float_images(image[None]))["_points"]
    result = {key: [tuple(int(v) for v in p[1:]) for p in np.argwhere(points[key])]
              for key in ("endpoints", "junctions", "corners")}
    result["loops"] = int(points["loops"][0])
    return result


def part_counts(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image counts of endpoints, junctions, corners and loops: int64 (N,) each, for a stack (N, 1, H, W)."""
    points = analyse(_as_float_images(images))["_points"]
    counts = {key: torch.from_numpy(points[key].sum(axis=(1, 2)).astype(np.int64))
              for key in ("endpoints", "junctions", "corners")}
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
        raise ReplearnError(f"labels run from {int(labels.min())} to {int(labels.max())} "
                            f"but there are {len(class_names)} class names")
    concepts = concept_list(class_names)
    x_all = _as_float_images(images)
    h, w = x_all.shape[1:]
    masks = torch.zeros((n, len(concepts), h, w), dtype=torch.bool)
    level12 = [c.name for c in concepts if c.level < 3]
    starts = range(0, n, chunk)
    if progress:
        starts = progress_bar(starts, desc="concept masks", unit="chunk")
    labels_np = labels.numpy()
    for start in starts:
        stop = min(start + chunk, n)
        parts = analyse(x_all[start:stop])
        for k, name in enumerate(level12):
            masks[start:stop, k] = torch.from_numpy(parts[name])
        # the ink grown by 1 px, plus any fainter pixel of the object (dark cloth on Fashion-MNIST)
        digit = torch.from_numpy(dilate(parts["_ink"], 1) | (x_all[start:stop] > FOREGROUND_THRESHOLD))
        rows = torch.arange(stop - start)
        masks[start + rows, len(level12) + torch.from_numpy(labels_np[start:stop])] = digit
    return ConceptMasks(masks, concepts)
