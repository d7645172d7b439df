"""Reference detectors per layer geometry: what a perfect detector of each concept scores, and what smeared ink scores.

Both are scored exactly as a unit is (:mod:`replearn.dissection.scoring`): a native map on the
layer's cells, the same registered upsampling, the same quantile threshold rule, the same IoU.

- ceiling: the native map of a perfect detector of concept c is c's mask averaged over each
  cell's ``step x step`` window centred on the cell's receptive-field centre. A coarse grid
  cannot draw a 3-px endpoint disc, so its ceiling for parts is far below 1; a unit's IoU
  is read against it.
- ink baseline: the native map is the image's ink blurred by a Gaussian (``ink_sigma``, 2 px
  by default) and pooled the same way. It knows where ink is dense and nothing about shape; at
  2 px, about the half-width of an MNIST stroke, it peaks where strokes meet or bunch up, so it
  overlaps junctions and loops without detecting them. A label must beat it.
"""

from __future__ import annotations

import torch

from replearn.dissection.patterns import ConceptPatterns
from replearn.dissection.registration import Geometry, pool, sampled
from replearn.dissection.scoring import accumulate, intersections, iou, thresholds

_BLUR: dict[tuple[int, float], torch.Tensor] = {}


def blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, size) 1-D Gaussian blur (zero outside the image): ``G @ image @ G.T`` blurs an image."""
    key = (size, float(sigma))
    if key not in _BLUR:
        offsets = torch.arange(size, dtype=torch.float64)
        kernel = torch.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / sigma) ** 2)
        radius = torch.arange(-size + 1, size, dtype=torch.float64)
        _BLUR[key] = (kernel / torch.exp(-0.5 * (radius / sigma) ** 2).sum()).float()
    return _BLUR[key]


def ink(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or [0, 1] float) images (B, C, H, W) or (B, H, W) -> float ink (B, H, W) in [0, 1]."""
    x = images.float()
    if not images.is_floating_point():
        x = x / 255.0
    return x.mean(1) if x.dim() == 4 else x


def reference_ious(masks: torch.Tensor, patterns: ConceptPatterns, images: torch.Tensor, geometry: Geometry,
                   settings) -> tuple[torch.Tensor, torch.Tensor]:
    """(ceiling (K,), ink baseline (K,)) at ``geometry`` on the first ``settings.ceiling_images`` probe images.

    masks: bool (N, K, H, W) and their ``patterns``; images: the probe images (N, 1, H, W);
    ``settings``: a DissectionSettings.
    """
    n = min(settings.ceiling_images, len(masks), len(images))
    k, size = masks.shape[1], tuple(masks.shape[2:])
    blur = blur_matrix(size[0], settings.ink_sigma), blur_matrix(size[1], settings.ink_sigma)
    step = settings.batch_size

    def native(start: int, stop: int) -> torch.Tensor:  # (B, K + 1, h, w): K perfect detectors, then ink
        smeared = blur[0] @ ink(images[start:stop]) @ blur[1].T  # (B, H, W)
        return torch.cat([pool(masks[start:stop].float(), geometry), pool(smeared, geometry)[:, None]], 1)

    q = min(settings.quantile_images, n)
    values = [sampled(native(s, min(s + step, q)), geometry, size) for s in range(0, q, step)]
    limits = thresholds(values, settings.quantile)
    counts = torch.zeros(k + 1, patterns.count, dtype=torch.int64)
    area = torch.zeros(k + 1, dtype=torch.float64)
    for start in range(0, n, step):
        stop = min(start + step, n)
        accumulate(native(start, stop), limits, patterns.ids[start:stop], patterns.count, geometry, size, counts, area)
    concept_area = patterns.concept_area(n)
    scores = iou(intersections(counts, patterns.bits), area[:, None], concept_area[None, :])  # (K + 1, K)
    return scores[:k].diagonal().clone(), scores[k].clone()
