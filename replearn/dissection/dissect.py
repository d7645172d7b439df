"""Network dissection (Bau et al., 2017) adapted to MNIST digit concepts, with the references that make a label mean something.

For every unit of a layer: its maps over the probe images (see :mod:`replearn.dissection.maps`)
upsampled to 28x28 *on the layer's receptive-field grid* (:mod:`replearn.dissection.registration`),
a per-unit threshold ``T_u`` at the top ``quantile`` of the upsampled values (estimated on the
first ``quantile_images`` images, every third row and column), maps binarized at ``T_u``, then
IoU with every concept mask accumulated over the whole probe set (:mod:`replearn.dissection.scoring`,
counted per concept pattern, :mod:`replearn.dissection.patterns`).

A unit is labelled with its best concept c when its IoU exceeds all of

- ``iou_threshold`` (the paper's 0.04);
- ``ink_baseline[c]``: the IoU of smeared ink seen through the same geometry
  (:mod:`replearn.dissection.references`), which overlaps junctions and loops without detecting them;
- the within-class null (:mod:`replearn.dissection.null`): the ``null_quantile`` quantile of its
  IoU with c when each image's masks are those of another image of its class. A class detector
  scores as well under this shuffle as without it, so it keeps no part label.

Each layer also gets ``ceiling`` (K,): the IoU a perfect detector of each concept reaches at its
geometry; coarse grids cannot reach part labels well, and a unit's IoU is read against it.

Defaults are the paper's (top 0.5%, IoU > 0.04). One change from the paper's code, which thresholds
the native maps: MNIST responses saturate, so a native threshold sits at the peak value that
interpolated maps almost never reach. Dead units get an empty mask and stay unlabelled. The
logits are not dissected: unit c is labelled with class c by construction (method ``class``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from replearn.dissection.maps import MapSource
from replearn.dissection.null import classes_from_masks, null_quantile_iou, within_class_permutations
from replearn.dissection.patterns import concept_patterns
from replearn.dissection.references import reference_ious
from replearn.dissection.registration import sample_grid, sampled
from replearn.dissection.result import LEVEL_NAMES, LayerDissection
from replearn.dissection.scoring import accumulate, intersections, iou, thresholds
from replearn.errors import ReplearnError
from replearn.progress import progress as progress_bar

__all__ = ["LEVEL_NAMES", "DissectionSettings", "LayerDissection", "dissect_layers", "dissect_model"]


@dataclass
class DissectionSettings:
    """How units are thresholded, scored against references and labelled (threshold defaults: Bau et al. 2017)."""

    quantile: float = 0.005  # top fraction of a unit's map values that counts as "on"
    iou_threshold: float = 0.04  # labelled when the best IoU exceeds this (and the ink baseline and the null)
    method: str = "auto"  # auto | activation | grad_x_input (see replearn.dissection.maps)
    grad_images: int = 1000  # probe images for gradient-map layers (each costs a Jacobian)
    quantile_images: int = 1000  # images whose upsampled maps set the thresholds
    top_units: int = 5  # units listed per concept
    batch_size: int = 250
    null_permutations: int = 20  # within-class mask permutations of the null; 0: no null
    null_quantile: float = 0.99  # a label must beat this quantile of the null IoUs
    ceiling_images: int = 2000  # probe images for the ceilings and the ink baseline
    ink_sigma: float = 2.0  # px: the Gaussian that smears the ink of the ink baseline
    seed: int = 0  # seeds the null's permutations

    def check(self) -> None:
        """One-line ReplearnError for an invalid setting."""
        if not 0.0 < self.quantile < 1.0:
            raise ReplearnError(f"dissection quantile={self.quantile} is invalid; use a fraction in (0, 1), e.g. 0.005")
        if not 0.0 <= self.iou_threshold < 1.0:
            raise ReplearnError(f"dissection iou_threshold={self.iou_threshold} is invalid; use a value in [0, 1), e.g. 0.04")
        if min(self.grad_images, self.batch_size, self.quantile_images) < 1 or self.top_units < 0:
            raise ReplearnError("dissection grad_images, quantile_images and batch_size must be positive, top_units >= 0")
        if self.null_permutations < 0:
            raise ReplearnError(f"dissection null_permutations={self.null_permutations} is invalid; use 0 (no null) "
                                "or a count such as 20")
        if not 0.0 < self.null_quantile <= 1.0:
            raise ReplearnError(f"dissection null_quantile={self.null_quantile} is invalid; use a value in (0, 1], e.g. 0.99")
        if self.ceiling_images < 1:
            raise ReplearnError(f"dissection ceiling_images={self.ceiling_images} is invalid; use a positive count, e.g. 2000")
        if not (self.ink_sigma > 0 and math.isfinite(self.ink_sigma)):
            raise ReplearnError(f"dissection ink_sigma={self.ink_sigma} is invalid; use a positive width in px, e.g. 2.0")


def _check_inputs(source, masks: torch.Tensor, labels) -> None:
    if len(masks) == 0:
        raise ReplearnError("the probe set is empty; dissection needs at least one image with concept masks")
    if len(masks) < len(source.images):
        raise ReplearnError(f"concept masks cover {len(masks)} images but {len(source.images)} are dissected; "
                            "build the masks for the same images")
    if labels is not None and len(labels) < len(source.images):
        raise ReplearnError(f"{len(labels)} labels for {len(source.images)} dissected images; pass one label per image")


def _score_maps(source, patterns, size: tuple[int, int], layers: list[str], settings: DissectionSettings, keep: bool,
                bar) -> dict:
    """The two passes over the maps of images of ``size``: thresholds, then pattern counts, areas, peaks and
    (``keep``) the on pixels."""
    q_images = min(settings.quantile_images, len(source.images))
    # Pass 1: per-unit thresholds at the top quantile of the upsampled maps of the first quantile_images
    # images (upsampled, not native: MNIST responses saturate, so a native threshold sits at the peak).
    samples: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    # computed gradient maps are only needed on the pixels sampled() reads
    for start, _stop, maps in source.chunks(limit=q_images, pixels_kept=sample_grid(size)):
        for name, m in maps.items():
            samples[name].append(sampled(m[: max(0, q_images - start)], source.geometry[name], size))
        bar.update()
    p = size[0] * size[1]
    state = {n: {"thresholds": thresholds(samples.pop(n), settings.quantile), "peaks": [], "on": []} for n in layers}
    # Pass 2: on pixels counted per concept pattern over the whole probe set.
    for start, stop, maps in source.chunks():
        ids = patterns.ids[start:stop]  # (B, P)
        for name, m in maps.items():
            b, s = m.shape[0], state[name]  # a gradient layer may stop inside the chunk (its grad_images)
            if "counts" not in s:
                s["counts"] = torch.zeros(m.shape[1], patterns.count, dtype=torch.int64)
                s["unit_area"] = torch.zeros(m.shape[1], dtype=torch.float64)
            peak, (units, images, pixels) = accumulate(m, s["thresholds"], ids[:b], patterns.count,
                                                       source.geometry[name], size, s["counts"], s["unit_area"])
            s["peaks"].append(peak)
            if keep:  # image * P + pixel fits int32 up to 2.7M 28x28 images
                s["on"].append((units.to(torch.int32), ((images + start) * p + pixels).to(torch.int32)))
        bar.update()
    return state


def dissect_layers(source, concept_masks, settings: DissectionSettings | None = None, progress: bool = False,
                   labels: torch.Tensor | None = None) -> dict[str, LayerDissection]:
    """Dissect every layer of ``source`` (a MapSource, PlantedSource or alike) against ``concept_masks``
    (a ConceptMasks aligned with the images).

    ``labels`` (N,): each image's class index, for the null's within-class permutations; by default
    each image's class is the level-3 concept whose mask is non-empty on it (the masks of level 3 are
    the foreground of the image's own class and empty for every other class).
    """
    settings = settings or DissectionSettings()
    settings.check()
    masks = concept_masks.masks  # (N, K, H, W) bool
    _check_inputs(source, masks, labels)
    names, levels = concept_masks.names(), concept_masks.levels()
    map_layers = [n for n, m in source.methods.items() if m != "class"]
    bar = progress_bar(desc="dissection", enabled=progress, leave=False, unit="chunk")
    null = settings.null_permutations > 0
    patterns = concept_patterns(masks)
    state = _score_maps(source, patterns, tuple(masks.shape[2:]), map_layers, settings, null, bar) if map_layers else {}
    bar.close()

    references = {}  # once per distinct geometry
    for name in map_layers:
        geometry = source.geometry[name]
        if geometry not in references:
            references[geometry] = reference_ious(masks, patterns, source.images, geometry, settings)
    concept_areas: dict[int, torch.Tensor] = {}  # (K,) per image count
    classes = torch.as_tensor(labels).long().reshape(-1) if labels is not None else classes_from_masks(masks, levels)
    perms: dict[int, torch.Tensor] = {}
    out = {}
    for name, method in source.methods.items():
        count = source.count(name)
        if method == "class":
            out[name] = _class_layer(name, source.scores[name], masks[:count], classes[:count], names, levels,
                                     settings.iou_threshold)
            continue
        s = state[name]
        if count not in concept_areas:
            concept_areas[count] = patterns.concept_area(count)
        concept_area = concept_areas[count]
        score = iou(intersections(s["counts"], patterns.bits), s["unit_area"][:, None], concept_area[None, :])
        ceiling, ink = references[source.geometry[name]]
        result = LayerDissection(name, method, score, s["thresholds"], names, levels, settings.iou_threshold, count,
                                 torch.cat(s["peaks"]).float(), ceiling=ceiling, ink_baseline=ink,
                                 geometry=source.geometry[name])
        if null:
            if count not in perms:
                perms[count] = within_class_permutations(classes[:count], settings.null_permutations, settings.seed)
            on, empty = s.pop("on"), torch.zeros(0, dtype=torch.int32)
            units = torch.cat([u for u, _ in on]) if on else empty
            where = torch.cat([w for _, w in on]) if on else empty  # image * P + pixel
            # only units the threshold and the ink baseline label can lose a label to the null
            result.null_iou = null_quantile_iou(units, where, result.best_concept,
                                                patterns, s["unit_area"], concept_area, perms[count],
                                                settings.null_quantile, tested=result.labelled_before_null)
        out[name] = result
    return out


def _class_layer(name: str, scores: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor, names: list[str],
                 levels: torch.Tensor, iou_threshold: float) -> LayerDissection:
    """The logits: unit c is labelled with the level-3 concept present on most (over half) of the images of
    class c - by construction, not measured (NaN); a logit of a class without such a concept (no images, or
    classes that are not the level-3 objects) stays unlabelled."""
    units, k = scores.shape[1], len(names)
    level3 = (levels == 3).nonzero().flatten()
    present = masks[:, level3].flatten(2).any(2).float()  # (N, C3)
    assigned = torch.full((units,), -1, dtype=torch.int64)
    for c in range(units):
        share = present[classes == c].mean(0) if (classes == c).any() else torch.zeros(len(level3))
        if len(level3) and share.max() > 0.5:
            assigned[c] = level3[share.argmax()]
    nan = torch.full((units, k), math.nan, dtype=torch.float64)
    return LayerDissection(name, "class", nan, torch.full((units,), math.nan), names, levels, iou_threshold,
                           len(scores), scores.float(), ceiling=torch.full((k,), math.nan, dtype=torch.float64),
                           ink_baseline=torch.full((k,), math.nan, dtype=torch.float64), assigned=assigned)


def dissect_model(model: nn.Module, images: torch.Tensor, concept_masks, layers: list[str] | None = None,
                  normalize=None, std: float = 1.0, settings: DissectionSettings | None = None,
                  progress: bool = False, labels: torch.Tensor | None = None) -> dict[str, LayerDissection]:
    """Dissect ``layers`` (default: every hidden block and the head) of ``model`` on uint8 ``images`` (N, 1, H, W).

    ``concept_masks`` must be built for the same images (see
    :func:`replearn.dissection.load_concept_masks`); ``normalize``/``std`` are the
    dataset's (the gradient proxy measures ink in model-input units); ``labels`` (N,): the images'
    classes for the null (default: read off the level-3 masks, see :func:`dissect_layers`).
    """
    settings = settings or DissectionSettings()
    settings.check()
    if images.shape[0] == 0:
        raise ReplearnError("the probe set is empty; pass at least one image")
    layers = list(layers) if layers is not None else list(model.layer_names())
    source = MapSource(model, layers, images, normalize, std, settings.method, settings.grad_images, settings.batch_size)
    return dissect_layers(source, concept_masks, settings, progress=progress, labels=labels)
