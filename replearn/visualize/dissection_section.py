"""The run page's "What each unit detects" section: dissection of every layer, trained vs random init."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from replearn.dissection import DissectionSettings, dissect_model
from replearn.dissection.concept_cache import concepts_for
from replearn.dissection.examples import top_labelled_units, unit_examples
from replearn.visualize.page import PageFigure, PageSection
from replearn.viz.dissection_plot import LEVEL_LABELS, plot_level_fractions, plot_unit_examples
from replearn.viz.grid import DPI


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def dissection_section(model: nn.Module, splits, layers: list[str], out: Path, n_images: int = 2000,
                       control: nn.Module | None = None, units_per_layer: int = 4, k: int = 5,
                       progress: bool = False) -> tuple[PageSection, dict]:
    """Dissect ``layers`` of ``model`` (and of ``control``) on the first ``n_images`` test images; draw the section.

    Returns the section and ``{layer: LayerDissection}`` of the model (for labels elsewhere on the page).
    """
    images = splits.test_x[:n_images].cpu()
    concepts = concepts_for(splits, n_images)
    settings = DissectionSettings(grad_images=min(1000, len(images)))
    std = float(splits.std)
    result = dissect_model(model, images, concepts, layers, splits.normalize, std, settings, progress=progress)
    fractions = {name: d.level_fractions() for name, d in result.items()}
    control_fractions = None
    if control is not None:
        control_result = dissect_model(control.eval(), images, concepts, layers, splits.normalize, std, settings)
        control_fractions = {name: d.level_fractions() for name, d in control_result.items()}

    levels = ("l1", "l2", "l3", "unlabelled")
    head = ["layer", "map", *(LEVEL_LABELS[lv] for lv in levels)]
    if control_fractions:
        head += [f"{LEVEL_LABELS[lv]} (random init)" for lv in levels]
    head += ["mean best IoU: edges / parts / objects"]
    table = [head]
    for name, d in result.items():
        row = [name, d.method.replace("_", " "), *(_pct(fractions[name][lv]) for lv in levels)]
        if control_fractions:
            row += [_pct(control_fractions[name][lv]) for lv in levels]
        best = d.mean_best_iou()
        row.append(" / ".join(f"{best[lv]:.3f}" for lv in ("l1", "l2", "l3")))
        table.append(row)

    section = PageSection(
        "What each unit detects",
        f"Network dissection (Bau et al. 2017) on {len(images)} test images: each unit's map is thresholded at "
        f"its top {100 * settings.quantile:.1f}% and compared with 28x28 concept masks at three levels "
        + ("(the shapes generator's exact masks: its 4 line orientations; its 6 part types; each object's own "
           "strokes). " if splits.name == "shapes" else
           "(edges and strokes; parts and shapes: endpoints, junctions, corners, curves, loops; whole digits). ")
        + f"A unit is labelled with its best concept when the IoU exceeds {settings.iou_threshold}. Conv channels use their "
        "feature maps; units without a spatial map (MLP units, logits) use gradient x input on the first "
        f"{settings.grad_images} images - which ink drives the unit, not where the unit is. "
        + ("The random-init network of the same architecture is dissected the same way as a control: labels it "
           "also gets come from the architecture and the data, not from training." if control is not None else ""),
        table=table,
    )
    fig = plot_level_fractions(fractions, control_fractions)
    fig.savefig(out / "dissection_levels.png", dpi=DPI)
    section.figures.append(PageFigure(out / "dissection_levels.png",
                                      "Fraction of units labelled at each level, per layer"
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
