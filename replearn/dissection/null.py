"""The within-image null: does a unit's label depend on the image, or only on its class?

Each image's concept masks are replaced by those of another image of the same class (a random
cycle through each class's images, one per permutation, seeded). A class detector - a unit
whose map is the same for every image of a class - scores the same IoU under this shuffle as
with the real masks; a detector of the concept scores far less. A unit keeps its label only if
its IoU beats the ``null_quantile`` quantile of its best concept's IoU under the permutations.

The unit's and the concept's areas do not change under a permutation (each image's mask moves to
another image, the set of masks stays the same), so only the intersections are recounted: the
dissection keeps each unit's on pixels (unit, image, pixel) and, per permutation, reads the best
concept's mask bit at (permuted image, pixel) off the concept patterns (:mod:`replearn.dissection.patterns`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from replearn.dissection.patterns import ConceptPatterns
from replearn.dissection.scoring import iou

CHUNK = 1 << 22  # on pixels gathered at a time (bounds the int64 index vectors to ~35 MB)


def classes_from_masks(masks: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(N,) each image's class: the index (among the level-3 concepts) of its non-empty level-3 mask; -1 if none."""
    level3 = (levels == 3).nonzero().flatten()
    present = masks[:, level3].flatten(2).any(2)  # (N, C)
    return torch.where(present.any(1), present.float().argmax(1), torch.full((len(masks),), -1))


def within_class_permutations(classes: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """(count, n) int64: row r maps each image to the image whose masks it gets in permutation r.

    Each class's images (and the class-less ones, -1) form one random cycle, so every image gets
    another image's masks whenever its class has two or more images.
    """
    gen = torch.Generator().manual_seed(int(seed))
    n = len(classes)
    groups = [(classes == c).nonzero().flatten() for c in classes.unique()]
    perms = torch.arange(n).repeat(count, 1)
    for r in range(count):
        for members in groups:
            cycle = members[torch.randperm(len(members), generator=gen)]
            perms[r, cycle] = cycle.roll(-1)
    return perms


def null_quantile_iou(units: torch.Tensor, where: torch.Tensor, best: torch.Tensor, patterns: ConceptPatterns,
                      unit_area: torch.Tensor, concept_area: torch.Tensor, perms: torch.Tensor, quantile: float,
                      tested: torch.Tensor | None = None) -> torch.Tensor:
    """(U,) the ``quantile`` quantile over ``perms`` of each unit's IoU with its ``best`` concept.

    units, where: the on pixels of every unit, one entry each: its unit and ``image * H * W + pixel``
    (int32 is enough); ``patterns``: the concept patterns of the probe images' masks;
    unit_area (U,) and concept_area (K,): the unpermuted areas over the layer's images. ``tested``
    (U,) bool: the units to test (the others get NaN and cost nothing).
    """
    n_units = len(unit_area)
    p, n_patterns = patterns.ids.shape[1], patterns.count
    tested = torch.ones(n_units, dtype=torch.bool) if tested is None else tested
    keep = tested[units.long()]
    # numpy: its fancy-index gather is ~4x faster than torch's on CPU for these tens of millions of entries.
    # A pixel's mask bit of concept c is bits[ids[image, pixel], c]: one gather in the (N, P) pattern ids
    # (2 bytes per pixel while there are fewer than 65536 patterns), one in the small (n, K) table.
    units_np, where_np = units[keep].numpy(), where[keep].numpy()
    ids = patterns.ids.numpy().reshape(-1)  # index = image * P + pixel
    ids = ids.astype(np.uint16) if n_patterns <= np.iinfo(np.uint16).max + 1 else ids
    bits = patterns.bits.numpy().reshape(-1)  # index = pattern * K + concept
    k = patterns.bits.shape[1]
    bases = (perms.long() * p).numpy()  # (R, N) where each image's permuted pattern ids start
    best_np = best.long().numpy()
    inter = np.zeros((len(perms), n_units), dtype=np.float64)
    for start in range(0, len(units_np), CHUNK):
        u = units_np[start:start + CHUNK]
        image, pixel = np.divmod(where_np[start:start + CHUNK].astype(np.intp), p)
        concept = best_np[u]
        index, pattern = np.empty(len(u), dtype=np.intp), np.empty(len(u), dtype=ids.dtype)
        for r, base in enumerate(bases):
            np.take(base, image, out=index)
            index += pixel
            np.take(ids, index, out=pattern)
            index[:] = pattern
            index *= k
            index += concept
            inter[r] += np.bincount(u[bits[index]], minlength=n_units)
    scores = iou(torch.from_numpy(inter), unit_area[None, :], concept_area[best][None, :])  # (R, U)
    return torch.where(tested, torch.quantile(scores, quantile, dim=0), math.nan)
