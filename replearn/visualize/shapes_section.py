"""The run page's shapes section: the three levels' exact masks beside the units that match them (data=shapes runs).

The shapes world (:mod:`replearn.shapes`) knows which line, part and object every pixel belongs to.
For each level this section draws an example of its masks and, beside it, the units of the page's
dissection whose best concept is at that level, highest IoU first, each on its strongest test
images. The dissection itself is the "What each unit detects" section's (its ``{layer:
LayerDissection}``); this one only reads it, so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from replearn.dissection.concept_cache import concepts_for
from replearn.dissection.concepts import ConceptMasks
from replearn.dissection.dissect import LayerDissection
from replearn.dissection.examples import unit_examples
from replearn.errors import ReplearnError
from replearn.visualize.page import PageFigure, PageSection
from replearn.viz.grid import DPI
from replearn.viz.shapes_plot import concept_label, plot_concept_levels, plot_level_units

#: Level -> what its concepts are, in the course's words.
LEVELS = {1: "lines", 2: "parts", 3: "objects"}
TITLE = "Lines, parts, objects: which units match each level"


def is_shapes(splits) -> bool:
    """True for the splits of a data=shapes run (the generator's masks exist for its test images)."""
    return getattr(splits, "name", None) == "shapes"


def level_units(dissected: dict[str, LayerDissection], level: int, count: int) -> list[tuple[str, int]]:
    """Up to ``count`` (layer, unit) whose best concept is at ``level`` and labelled. Hidden units come before the
    head's (a class logit matches its object by construction); within each, one unit per concept first, highest IoU
    first, then the rest (so one over-represented concept does not fill the row)."""
    found = []
    for layer, d in dissected.items():
        unit_level = d.concept_levels[d.best_concept]
        for u in ((unit_level == level) & d.labelled).nonzero().view(-1).tolist():
            found.append((layer == "head", -float(d.best_iou[u]), layer, u, d.concept_names[int(d.best_concept[u])]))
    found.sort(key=lambda item: item[:2])
    ordered = []
    for is_head in (False, True):
        first, rest, seen = [], [], set()
        for item in (f for f in found if f[0] == is_head):
            (rest if item[4] in seen else first).append(item)
            seen.add(item[4])
        ordered += first + rest
    return [(layer, u) for _, _, layer, u, _ in ordered[:count]]


def _examples(model, dissected, chosen, images, concepts, k, normalize, std):
    """unit_examples for ``chosen`` (layer, unit), one call per layer, back in the order of ``chosen``."""
    by_layer: dict[str, list[int]] = {}
    for layer, u in chosen:
        by_layer.setdefault(layer, []).append(u)
    rows = {}
    for layer, units in by_layer.items():
        ex = unit_examples(model, dissected[layer], images, concepts, units, k=k, normalize=normalize, std=std)
        for i, u in enumerate(units):
            title = f"{layer} unit {u}\n{concept_label(ex.concepts[i])}\nIoU {ex.ious[i]:.3f}"
            rows[(layer, u)] = (ex.images[i], ex.unit_masks[i], ex.concept_masks[i], title)
    parts = [rows[c] for c in chosen]
    if not parts:
        empty = torch.zeros((0, k, *images.shape[-2:]))
        return empty.to(torch.uint8), empty.bool(), empty.bool(), []
    return (torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts]),
            torch.stack([p[2] for p in parts]), [p[3] for p in parts])


def _example_images(labels: torch.Tensor, count: int) -> list[int]:
    """The first test image of each of the first ``count`` classes present: the same images at every level."""
    picked, seen = [], set()
    for i, y in enumerate(labels.tolist()):
        if y not in seen:
            picked.append(i)
            seen.add(y)
        if len(picked) == count:
            break
    return picked


def _table(dissected: dict[str, LayerDissection]) -> list[list[str]]:
    """Per layer and level: labelled units whose best concept is at the level / all units, and their best IoU."""
    table = [["layer", *(f"level {level}: {name}" for level, name in LEVELS.items())]]
    for layer, d in dissected.items():
        row = [layer]
        for level in LEVELS:
            hits = (d.concept_levels[d.best_concept] == level) & d.labelled
            if not d.is_measured:  # the logits: labelled by their class, not measured
                best = " (by its class)" if hits.any() else ""
            else:
                best = f" (best IoU {float(d.best_iou[hits].max()):.3f})" if hits.any() else ""
            row.append(f"{int(hits.sum())}/{len(hits)}{best}")
        table.append(row)
    return table


def shapes_section(model: nn.Module, splits, dissected: dict[str, LayerDissection], out: Path,
                   n_images: int = 2000, concepts: ConceptMasks | None = None, units_per_level: int = 4,
                   k: int = 4, examples: int = 2) -> PageSection:
    """The section for a data=shapes run: a figure of the three levels' masks, then one figure per level with
    that level's masks beside its best-matching units (from ``dissected``, the page's dissection of the first
    ``n_images`` test images). ``concepts``: the masks that dissection used (default: the generator's, from
    :func:`~replearn.dissection.concept_cache.concepts_for`, as the dissection section gets them)."""
    images, labels = splits.test_x[:n_images].cpu(), splits.test_y[:n_images].cpu()
    concepts = concepts if concepts is not None else concepts_for(splits, n_images)
    for layer, d in dissected.items():
        if d.concept_names != concepts.names():
            raise ReplearnError(f"the dissection of {layer} scored other concepts ({', '.join(d.concept_names[:3])}, "
                                "...) than the shapes generator's masks: dissect shapes runs with the masks of "
                                "replearn.dissection.concept_cache.concepts_for(splits, n)")
    out = Path(out)
    shown = _example_images(labels, examples)
    section = PageSection(
        TITLE,
        "The shapes world is built in three levels, and the generator knows every pixel's: level 1, lines at 0, 45, "
        "90 and 135 degrees; level 2, parts made only of those lines (L-corners, T- and X-junctions, squares, "
        "triangles, filled squares); level 3, objects told apart only by how their parts are arranged, among "
        "distractor parts. If a network builds its representation as the course describes, units matching "
        "lines sit in the first layers, parts in the middle, objects at the top. Below, each level's exact masks "
        "beside the units (from the dissection above) whose best concept is at that level; a class logit (head) "
        "matches its object by construction, so hidden units come first. The table counts them per layer: "
        "labelled units whose best concept is at the level / all units.",
        table=_table(dissected),
    )
    fig = plot_concept_levels(images, concepts, shown)
    fig.savefig(out / "shapes_levels.png", dpi=DPI)
    section.figures.append(PageFigure(out / "shapes_levels.png", "Two test images and their exact masks at each level: "
                                      "lines (one colour per orientation), parts (one colour per part type), the "
                                      "object (its own strokes; distractors grey)."))
    std = float(splits.std)
    for level, name in LEVELS.items():
        chosen = level_units(dissected, level, units_per_level)
        unit_images, unit_masks, concept_masks, titles = _examples(model, dissected, chosen, images, concepts, k,
                                                                   splits.normalize, std)
        fig = plot_level_units(images, concepts, shown, level, unit_images, unit_masks, concept_masks, titles,
                               title=f"Level {level}: {name}")
        path = out / f"shapes_level{level}.png"
        fig.savefig(path, dpi=DPI)
        what = (f"the {len(chosen)} units whose best concept is one of the {name}, highest IoU first, each on its "
                f"{unit_images.shape[1]} strongest test images (orange: where the unit is on; cyan: the concept's mask)"
                if chosen else f"no unit of the dissected layers has one of the {name} as its best concept")
        section.figures.append(PageFigure(path, f"Level {level}, {name}: left, the masks; right, {what}."))
    return section
