"""Concept masks drawn level by level: lines -> parts -> objects (the shapes world, :mod:`replearn.shapes`).

- :func:`plot_concept_levels`: for a few images, the image, then its level-1 masks (one colour per
  line orientation), level-2 masks (one colour per part type) and level-3 mask (the object's own
  strokes; other ink grey);
- :func:`plot_level_units`: one level's masks beside the units whose best concept is at that level,
  each on its strongest images (the run page's shapes section).

Both work with any ``ConceptMasks`` (the MNIST heuristics too); the colours follow the concept order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch

from replearn.dissection.concepts import ConceptMasks
from replearn.errors import ReplearnError

#: Column titles per level; the course's picture.
LEVEL_TITLES = {1: "1. lines\n(colour = orientation)", 2: "2. parts\n(built from lines)", 3: "3. object\n(built from parts)"}
OTHER_INK = "#c8c8c8"  # ink that no mask of the level covers (distractors at level 3)
UNIT_ON, CONCEPT_EDGE = "#ff7f0e", "#00bcd4"  # as replearn.viz.dissection_plot.plot_unit_examples
_GLYPHS = {"horizontal": "horizontal  —", "diag_up": "diagonal  /", "vertical": "vertical  |", "diag_down": "diagonal  \\"}


def concept_label(name: str) -> str:
    """A short legend label: ``stroke_diag_up`` -> "diagonal  /", ``class_house`` -> "house", ``t_junction`` -> "t junction"."""
    for prefix in ("stroke_", "class_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return _GLYPHS.get(name, name.replace("_", " "))


def level_colours(count: int, level: int) -> np.ndarray:
    """(count, 3) RGB colours for a level's concepts: tab10 without its green and grey for lines, Dark2 for parts
    (tab20 past their size), near black for the object (one object per image)."""
    if level == 3:
        return np.tile(np.array([[0.07, 0.07, 0.07]]), (count, 1))
    if level == 1 and count <= 8:
        return np.array([colormaps["tab10"](i)[:3] for i in (0, 1, 4, 3, 5, 6, 8, 9)[:count]])
    name = "Dark2" if level == 2 and count <= 8 else "tab20"
    return np.array([colormaps[name](i % colormaps[name].N)[:3] for i in range(count)])


def level_overlay(image: torch.Tensor, masks: torch.Tensor, colours: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB: each masked pixel in its concepts' colour (overlaps averaged), other ink light grey, background white."""
    ink = image.float().numpy()
    ink = ink / 255.0 if not image.is_floating_point() else ink
    grey = np.array([int(OTHER_INK[i:i + 2], 16) / 255.0 for i in (1, 3, 5)])
    base = 1.0 - ink[..., None] * (1.0 - grey)  # white paper, grey ink
    m = masks.numpy().astype(float)  # (K, H, W)
    count = m.sum(0)
    mixed = np.einsum("khw,kc->hwc", m, colours) / np.maximum(count, 1)[..., None]
    return np.where(count[..., None] > 0, mixed, base)


def _canvas(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Figure | SubFigure]:
    """A new figure, or a subfigure in the place of ``ax`` (removed) so several panels fill its slot."""
    if ax is None:
        fig = Figure(figsize=size, layout="constrained")
        return fig, fig
    fig = ax.figure
    spec = ax.get_subplotspec()
    if spec is None:
        raise ReplearnError("ax must be a subplot (made by add_subplot or subplots): its place is split into panels")
    ax.remove()
    return fig.figure if isinstance(fig, SubFigure) else fig, fig.add_subfigure(spec)


def _check(images: torch.Tensor, masks: ConceptMasks) -> torch.Tensor:
    images = images[:, 0] if images.dim() == 4 else images
    if images.dim() != 3 or len(images) != len(masks) or tuple(images.shape[1:]) != tuple(masks.masks.shape[2:]):
        raise ReplearnError(f"images {tuple(images.shape)} do not match masks {tuple(masks.masks.shape)}: "
                            "pass the images the masks were built for, (N, 1, H, W) or (N, H, W)")
    return images


def _rows(index, count: int) -> list[int]:
    rows = [int(i) for i in torch.as_tensor(index).reshape(-1)]
    if not rows or any(not 0 <= i < count for i in rows):
        raise ReplearnError(f"index {rows} is invalid: give 1 or more image indices in [0, {count})")
    return rows


def _level_legend(ax: Axes, masks: ConceptMasks, level: int, colours: np.ndarray) -> None:
    names = [c.name for c in masks.concepts if c.level == level]
    if level == 3:
        handles = [Patch(color=colours[0], label="the object's own strokes")]
    else:
        handles = [Patch(color=colours[i], label=concept_label(n)) for i, n in enumerate(names)]
    if level > 1:
        handles.append(Patch(color=OTHER_INK, label="other ink" + (" (distractors)" if level == 3 else "")))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.04), fontsize=7, frameon=False,
              handlelength=1.2, borderaxespad=0.0)


def _draw_level(ax: Axes, image: torch.Tensor, masks: ConceptMasks, row: int, level: int) -> np.ndarray:
    cols = (masks.levels() == level).nonzero().view(-1)
    colours = level_colours(len(cols), level)
    ax.imshow(level_overlay(image, masks.masks[row, cols], colours), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return colours


def _row_label(masks: ConceptMasks, row: int) -> str:
    """The image's object: its non-empty level-3 mask ("" when none is)."""
    level3 = (masks.levels() == 3).nonzero().view(-1)
    present = [int(k) for k in level3 if masks.masks[row, k].any()]
    return concept_label(masks.concepts[present[0]].name) if len(present) == 1 else ""


def plot_concept_levels(images: torch.Tensor, masks: ConceptMasks, index: Sequence[int] | torch.Tensor,
                        ax: Axes | None = None, title: str = "lines → parts → objects: each image's exact masks") -> Figure:
    """One row per image of ``index``: the image, its level-1, level-2 and level-3 masks, with a legend per level.

    ``images`` uint8 (N, 1, H, W) or (N, H, W) and ``masks`` (N concepts' masks) for the same images,
    e.g. from ``replearn.shapes.generate``. Level 1 colours each line orientation, level 2 each part
    type, level 3 the object's own strokes; ink a level's masks leave out is light grey. With ``ax``,
    the panels fill its place in its figure.
    """
    images = _check(images, masks)
    rows = _rows(index, len(images))
    levels = [lv for lv in (1, 2, 3) if bool((masks.levels() == lv).any())]
    fig, canvas = _canvas(ax, (1.75 * (len(levels) + 1) + 0.6, 1.75 * len(rows) + 1.9))
    axes = canvas.subplots(len(rows), len(levels) + 1, squeeze=False)
    for r, row in enumerate(rows):
        first = axes[r, 0]
        first.imshow(images[row].float().numpy(), cmap="gray_r", vmin=0,
                     vmax=1 if images.is_floating_point() else 255, interpolation="nearest")
        first.set_xticks([])
        first.set_yticks([])
        first.set_ylabel(_row_label(masks, row), fontsize=9)
        for c, level in enumerate(levels, start=1):
            colours = _draw_level(axes[r, c], images[row], masks, row, level)
            if r == len(rows) - 1:
                _level_legend(axes[r, c], masks, level, colours)
    axes[0, 0].set_title("image", fontsize=9)
    for c, level in enumerate(levels, start=1):
        axes[0, c].set_title(LEVEL_TITLES.get(level, f"level {level}"), fontsize=9)
    if title:
        canvas.suptitle(title, fontsize=10)
    return fig


def plot_level_units(images: torch.Tensor, masks: ConceptMasks, index: Sequence[int] | torch.Tensor, level: int,
                     unit_images: torch.Tensor, unit_masks: torch.Tensor, concept_masks: torch.Tensor,
                     row_titles: Sequence[str], title: str = "", ax: Axes | None = None) -> Figure:
    """Left: level ``level``'s masks on the images of ``index``. Right: one row per unit, its strongest images.

    ``unit_images`` (U, k, H, W) uint8, ``unit_masks`` (where the unit is on) and ``concept_masks`` (its
    best concept) (U, k, H, W) bool, as :func:`replearn.dissection.examples.unit_examples` gives them;
    ``row_titles`` one per unit. U may be 0: the right side then says no unit matched this level.
    """
    images = _check(images, masks)
    rows = _rows(index, len(images))
    if not bool((masks.levels() == level).any()):
        raise ReplearnError(f"level={level} is invalid: the masks have levels {sorted(set(masks.levels().tolist()))}")
    u = int(unit_images.shape[0])
    k = int(unit_images.shape[1]) if u else 1
    if u != len(row_titles) or tuple(unit_masks.shape[:2]) != tuple(unit_images.shape[:2]) \
            or tuple(concept_masks.shape[:2]) != tuple(unit_images.shape[:2]):
        raise ReplearnError(f"unit images {tuple(unit_images.shape)}, unit masks {tuple(unit_masks.shape)}, concept "
                            f"masks {tuple(concept_masks.shape)} and {len(row_titles)} row titles do not match")
    height = max(1.25 * max(u, 1) + 0.6, 1.5 * len(rows) + 1.9)
    fig, canvas = _canvas(ax, (1.8 + 1.05 * k + 1.7, height))
    left, right = canvas.subfigures(1, 2, width_ratios=[1.8, 1.05 * k + 1.7], wspace=0.02)
    axes = left.subplots(len(rows), 1, squeeze=False)[:, 0]
    for r, row in enumerate(rows):
        colours = _draw_level(axes[r], images[row], masks, row, level)
        axes[r].set_ylabel(_row_label(masks, row), fontsize=8)
    axes[0].set_title(LEVEL_TITLES.get(level, f"level {level}").replace("\n", " "), fontsize=8, wrap=True)
    _level_legend(axes[-1], masks, level, colours)
    if u == 0:
        blank = right.add_subplot()
        blank.axis("off")
        blank.text(0.5, 0.5, "no unit's best concept\nis at this level", ha="center", va="center", fontsize=9,
                   transform=blank.transAxes)
    else:
        grid = right.subplots(u, k, squeeze=False)
        for i in range(u):
            for j in range(k):
                a = grid[i, j]
                a.imshow(unit_images[i, j].float().numpy(), cmap="gray_r", vmin=0,
                         vmax=1 if unit_images.is_floating_point() else 255, interpolation="nearest")
                if concept_masks[i, j].any():
                    a.contour(concept_masks[i, j].float().numpy(), levels=[0.5], colors=CONCEPT_EDGE, linewidths=1.0)
                if unit_masks[i, j].any():
                    a.contour(unit_masks[i, j].float().numpy(), levels=[0.5], colors=UNIT_ON, linewidths=1.4)
                a.set_xticks([])
                a.set_yticks([])
            grid[i, 0].set_ylabel(row_titles[i], fontsize=7, rotation=0, ha="right", va="center")
        right.suptitle("units that match (orange: unit on, cyan: its concept)", fontsize=8)
    if title:
        canvas.suptitle(title, fontsize=10)
    return fig
