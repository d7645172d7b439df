"""The dissection's scoring rule, shared by units and by the reference detectors (ceilings, smeared ink).

A unit's maps are upsampled on its layer's geometry (:mod:`replearn.dissection.registration`);
its threshold is the top ``quantile`` of those upsampled values; its mask is the pixels at or
above the threshold; its IoU with a concept is accumulated over the probe set:
``IoU(u, c) = sum |M_u ∩ L_c| / sum |M_u ∪ L_c|``.
"""

from __future__ import annotations

import math

import torch

from replearn.dissection.registration import Geometry, upsample


def thresholds(values: list[torch.Tensor], quantile: float) -> torch.Tensor:
    """Per-unit threshold (U,) from its sampled values: the top-``quantile`` value ("on" is >= it).

    Ties decide the edge cases. Ties at the peak (saturated responses, common on near-binary MNIST)
    are all on. A plateau below the peak (a unit that is 0 on most pixels and above 0 on fewer than
    the quantile) is excluded: its mask is the pixels above the plateau. A constant unit is never on.
    """
    flat = torch.cat(values, 1)  # (U, n)
    k = max(1, math.ceil(quantile * flat.shape[1]))
    kth = flat.topk(k, dim=1, sorted=False).values.min(1).values
    peak, low = flat.max(1).values, flat.min(1).values
    tied_plateau = (kth < peak) & ((flat >= kth[:, None]).sum(1) > 2 * k)
    above = torch.nextafter(kth, torch.full_like(kth, math.inf))
    out = torch.where(tied_plateau, above, kth)
    return torch.where(peak == low, torch.full_like(kth, math.inf), out)


def accumulate(maps: torch.Tensor, thresholds: torch.Tensor, concept_t: torch.Tensor, geometry: Geometry,
               size: tuple[int, int], inter: torch.Tensor, unit_area: torch.Tensor
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Add one chunk's |M_u ∩ L_c| to ``inter`` (U, K) and |M_u| to ``unit_area`` (U,).

    Returns the peaks (B, U) and the on pixels as (unit, image in the chunk, pixel) index vectors.
    Only (image, unit) maps whose peak reaches the threshold can be on anywhere (the registered
    upsampling interpolates, so it never exceeds the peak); only those are upsampled, and the
    intersections are a gather of the concept vectors at the on pixels. concept_t: (B, H*W, K) float.
    """
    peak = maps.flatten(2).amax(2)  # (B, U)
    b_idx, u_idx = (peak >= thresholds).nonzero(as_tuple=True)
    if len(b_idx) == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return peak, (empty, empty, empty)
    up = upsample(maps[b_idx, u_idx], geometry, size).flatten(1)  # (S, P)
    s_idx, p_idx = (up >= thresholds[u_idx, None]).nonzero(as_tuple=True)
    units, images = u_idx[s_idx], b_idx[s_idx]
    inter.index_add_(0, units, concept_t[images, p_idx].double())
    unit_area.index_add_(0, units, torch.ones(len(units), dtype=torch.float64))
    return peak, (units, images, p_idx)


def iou(inter: torch.Tensor, unit_area: torch.Tensor, concept_area: torch.Tensor) -> torch.Tensor:
    """|M ∩ L| / |M ∪ L| elementwise (0 where both are empty); the one formula the labels and the null share,
    so equal counts give bit-identical IoUs."""
    union = unit_area + concept_area - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
