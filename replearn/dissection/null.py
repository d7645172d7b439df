"""The within-image null: does a unit's label depend on the image, or only on its class?

Each image's concept masks are replaced by those of another image of the same class (a random
cycle through each class's images, one per permutation, seeded). A class detector - a unit
whose map is the same for every image of a class - scores the same IoU under this shuffle as
with the real masks; a detector of the concept scores far less. A unit keeps its label only if
its IoU beats the ``null_quantile`` quantile of its best concept's IoU under the permutations.

The unit's and the concept's areas do not change under a permutation (each image's mask moves to
another image, the set of masks stays the same), so only the intersections are recounted: the
dissection keeps each unit's on pixels (unit, image, pixel) and, per permutation, reads the best
concept's mask bit at (permuted image, pixel).
"""

from __future__ import annotations

import math

import numpy as np
import torch

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


def null_quantile_iou(units: torch.Tensor, where: torch.Tensor, best: torch.Tensor,
                      masks: torch.Tensor, unit_area: torch.Tensor, concept_area: torch.Tensor,
                      perms: torch.Tensor, quantile: float, tested: torch.Tensor | None = None) -> torch.Tensor:
    """(U,) the ``quantile`` quantile over ``perms`` of each unit's IoU with its ``best`` concept.

    units, where: the on pixels of every unit, one entry each: its unit and ``image * H * W + pixel``
    (int32 is enough); masks: bool (N, K, H, W);
    unit_area (U,) and concept_area (K,): the unpermuted areas over the layer's images. ``tested``
    (U,) bool: the units to test (the others get NaN and cost nothing).
    """
    n_units, k = len(unit_area), masks.shape[1]
    p = masks.shape[2] * masks.shape[3]
    tested = torch.ones(n_units, dtype=torch.bool) if tested is None else tested
    keep = tested[units.long()]
    # numpy: its fancy-index gather is ~4x faster than torch's on CPU for these tens of millions of bits
    units_np, where_np = units[keep].numpy(), where[keep].numpy().astype(np.int64)
    flat = masks.contiguous().numpy().reshape(-1)  # index = image * K * P + concept * P + pixel
    offset = best.long().numpy()[units_np] * p + where_np % p
    image = where_np // p
    bases = (perms.long() * (k * p)).numpy()  # (R, N) where each image's permuted masks start
    inter = np.zeros((len(perms), n_units), dtype=np.float64)
    for start in range(0, len(units_np), CHUNK):
        stop = start + CHUNK
        u, img, off = units_np[start:stop], image[start:stop], offset[start:stop]
        for r, base in enumerate(bases):
            inter[r] += np.bincount(u[flat[base[img] + off]], minlength=n_units)
    scores = iou(torch.from_numpy(inter), unit_area[None, :], concept_area[best][None, :])  # (R, U)
    return torch.where(tested, torch.quantile(scores, quantile, dim=0), math.nan)
