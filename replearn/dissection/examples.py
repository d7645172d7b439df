"""Evidence for a unit's label: its strongest probe images with the unit's mask and the concept's mask.

For a labelled unit, the images where its map peaks highest, and on each the unit's
"on" region (map upsampled and thresholded exactly as in the dissection) and the mask
of the concept it was labelled with, so a reader can check the label by eye. A logit
(method ``class``) has no map: its strongest images are those it scores highest, with no on-region.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from replearn.dissection.maps import grad_x_input_maps
from replearn.dissection.registration import Geometry, upsample
from replearn.dissection.result import LayerDissection
from replearn.recording.hooks import capture_activations


@dataclass
class UnitExamples:
    """For U units and k images each: images (U, k, H, W) uint8, unit masks and concept masks (U, k, H, W) bool."""

    layer: str
    units: list[int]
    concepts: list[str]
    ious: list[float]
    indices: torch.Tensor  # (U, k) probe-image indices
    images: torch.Tensor
    unit_masks: torch.Tensor
    concept_masks: torch.Tensor


def top_labelled_units(dissection: LayerDissection, count: int = 4) -> list[int]:
    """The ``count`` labelled units with the highest IoU, preferring distinct concepts (none for the logits)."""
    if not dissection.is_measured:
        return []
    labelled = dissection.labelled.nonzero().flatten().tolist()
    labelled.sort(key=lambda u: -float(dissection.best_iou[u]))
    chosen, seen = [], set()
    for u in labelled:  # one unit per concept first, then the rest by IoU
        concept = int(dissection.best_concept[u])
        if concept not in seen:
            chosen.append(u)
            seen.add(concept)
    chosen += [u for u in labelled if u not in chosen]
    return chosen[:count]


def _maps(model: nn.Module, dissection: LayerDissection, images: torch.Tensor, normalize, std: float) -> torch.Tensor:
    """(N, U, h, w) maps of the dissected kind for ``images`` ((N, U) logits for method ``class``)."""
    if dissection.method in ("activation", "class"):
        return capture_activations(model, images, [dissection.layer], normalize=normalize)[dissection.layer]
    return grad_x_input_maps(model, [dissection.layer], images, normalize, std)[dissection.layer]


def unit_examples(model: nn.Module, dissection: LayerDissection, images: torch.Tensor, concept_masks,
                  units: list[int], k: int = 5, normalize=None, std: float = 1.0) -> UnitExamples:
    """The ``k`` probe images where each of ``units`` peaks highest, with its on-region and its concept's mask."""
    n = min(dissection.images, len(images))
    size = tuple(concept_masks.masks.shape[2:])
    if dissection.peaks is not None and len(dissection.peaks) >= n:
        peaks = dissection.peaks[:n, units]  # recorded by the dissection: no second pass over the maps
    else:
        parts = []
        for start in range(0, n, 500):  # gradient maps are U x H x W per image: stream them
            maps = _maps(model, dissection, images[start:min(start + 500, n)], normalize, std)
            own = maps[:, units]
            parts.append(own.flatten(2).amax(2) if own.dim() > 2 else own)  # (B, U)
        peaks = torch.cat(parts)
    top = peaks.topk(min(k, n), dim=0).indices.T  # (U, k)
    chosen = top.flatten()
    unit_ids = torch.tensor(units, dtype=torch.int64).repeat_interleave(top.shape[1])
    if dissection.is_measured:
        maps = _maps(model, dissection, images[chosen], normalize, std)  # (U*k, U_all, h, w)
        geometry = dissection.geometry or Geometry.evenly(tuple(maps.shape[-2:]), size)
        own = upsample(maps[torch.arange(len(chosen)), unit_ids], geometry, size)  # (U*k, H, W)
        on = own >= dissection.thresholds[unit_ids].view(-1, 1, 1)
    else:  # a logit has no map of its own
        on = torch.zeros(len(chosen), *size, dtype=torch.bool)
    concept_ids = dissection.best_concept[unit_ids]
    concept = concept_masks.masks[chosen, concept_ids]  # (U*k, H, W)
    shape = (len(units), top.shape[1], *size)
    return UnitExamples(
        layer=dissection.layer, units=list(units),
        concepts=[dissection.concept_names[int(dissection.best_concept[u])] for u in units],
        ious=[float(dissection.best_iou[u]) for u in units], indices=top,
        images=images[chosen, 0].reshape(shape), unit_masks=on.reshape(shape), concept_masks=concept.reshape(shape),
    )
