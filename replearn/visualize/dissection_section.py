"""The run page's "What each unit detects" section: dissection of every layer, trained vs random init."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from replearn.dissection import DissectionSettings
from replearn.dissection.concept_cache import concepts_for
from replearn.dissection.examples import top_labelled_units, unit_examples
from replearn.visualize.page import PageFigure, PageSection
from replearn.visualize.reuse import dissect_pair
from replearn.viz.dissection_plot import LEVEL_LABELS, plot_level_fractions, plot_unit_examples
from replearn.viz.grid import DPI


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def dissection_section(model: nn.Module, splits, layers: list[str], out: Path, n_images: int = 2000,
                       control: nn.Module | None = None, units_per_layer: int = 4, k: int = 5,
                       progress: bool = False) -> tuple[PageSection, dict]:
    """Dissect ``layers`` of ``model`` (and of ``control``) on the first ``n_images`` test images; draw the section.

    Returns the section and ``{layer: LayerDissection}`` of the model (for labels elsewhere on the page). The
    dissections are read back when these networks were dissected on these images before (:func:`.reuse.dissect_pair`).
    """
    images = splits.test_x[:n_images].cpu()
    concepts = concepts_for(splits, n_images)
    settings = DissectionSettings(grad_images=min(1000, len(images)))
    std = float(splits.std)
    # The slow part: read back from the per-user cache when this pair was dissected the same way before.
    result, control_result = dissect_pair(model, control, splits, layers, concepts, len(images), settings,
                                          progress=progress)
    measured = [name for name, d in result.items() if d.is_measured]  # the head is its class, not a measurement
    fractions = {name: result[name].level_fractions() for name in measured}
    control_fractions = None
    if control_result is not None:
        control_fractions = {name: control_result[name].level_fractions() for name in measured}

    levels = ("l1", "l2", "l3", "unlabelled")
    head = ["layer", "map", *(LEVEL_LABELS[lv] for lv in levels), "labels the null removed"]
    if control_fractions:
        head += [f"{LEVEL_LABELS[lv]} (random init)" for lv in levels]
    head += ["mean best IoU / ceiling: edges / parts / objects"]
    table = [head]
    for name, d in result.items():
        if not d.is_measured:
            table.append([name, "its class", *(["n/a"] * (len(head) - 2))])
            continue
        before = d.level_fractions(before_null=True)["unlabelled"]
        row = [name, d.method.replace("_", " "), *(_pct(fractions[name][lv]) for lv in levels),
               _pct(fractions[name]["unlabelled"] - before)]
        if control_fractions:
            row += [_pct(control_fractions[name][lv]) for lv in levels]
        ratio = d.mean_best_iou_vs_ceiling()
        row.append(" / ".join(f"{ratio[lv]:.2f}" for lv in ("l1", "l2", "l3")))
        table.append(row)

    section = PageSection(
        "What each unit detects",
        f"Network dissection (Bau et al. 2017) on {len(images)} test images: each unit's map is upsampled at its "
        "cells' receptive-field centres, thresholded at "
        f"its top {100 * settings.quantile:.1f}% and compared with 28x28 concept masks at three levels "
        + ("(the shapes generator's exact masks: its 4 line orientations; its 6 part types; each object's own "
           "strokes). " if splits.name == "shapes" else
           "(edges and strokes; parts and shapes: endpoints, junctions, corners, curves, loops; whole digits). ")
        + f"A unit is labelled with a concept when its IoU exceeds {settings.iou_threshold}, exceeds what smeared "
        f"ink (the image blurred by {settings.ink_sigma:g} px) scores through the same grid, and exceeds the "
        f"{100 * settings.null_quantile:g}% quantile of its IoU when each image's masks are swapped with those of "
        f"another image of its class ({settings.null_permutations} permutations): a unit that only knows the class "
        "keeps no label. Among the concepts that pass, the label is the one the unit detects closest to a perfect "
        "detector of it at the layer's resolution (its ceiling: a 4x4 grid cannot draw a thin endpoint); the last "
        "column is each level's best IoU over that ceiling. Conv channels use their feature maps. MLP units have "
        f"no map: each sees the whole image from the first layer on, so their maps are gradient x input on the "
        f"first {settings.grad_images} images, which shows which ink drives the unit in an image, not where the "
        "unit is, and can only ever fall on ink. The logits (head) are not dissected: each is labelled with its "
        "own class, which is how it was trained, not a finding. "
        + ("The random-init network of the same architecture is dissected the same way as a control: labels it "
           "also gets come from the architecture and the data, not from training." if control is not None else ""),
        table=table,
    )
    if fractions:
        fig = plot_level_fractions(fractions, control_fractions)
        fig.savefig(out / "dissection_levels.png", dpi=DPI)
        section.figures.append(PageFigure(out / "dissection_levels.png",
                                          "Fraction of units labelled at each level, per dissected layer (the head "
                                          "is its class, not counted)"
                                          + (" (left: trained, right hatched: random init)." if control_fractions else ".")))
    for name, d in result.items():
        units = top_labelled_units(d, units_per_layer)
        if not units:
            continue
        ex = unit_examples(model, d, images, concepts, units, k=k, normalize=splits.normalize, std=std)
        titles = [f"unit {u}\n{c}\nIoU {iou:.3f}" for u, c, iou in zip(ex.units, ex.concepts, ex.ious)]
        fig = plot_unit_examples(ex.images, ex.unit_masks, ex.concept_masks, titles, title=f"{name}: top labelled units")
        path = out / f"{name.replace('.', '-')}_dissection.png"
        fig.savefig(path, dpi=DPI)
        section.figures.append(PageFigure(
            path, f"{name}: the {len(units)} labelled units with the highest IoU (distinct concepts first), each on "
                  f"its {ex.images.shape[1]} strongest test images; orange: where the unit is on, cyan: its concept."))
    return section, result
