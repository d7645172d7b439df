"""The shapes world's level figures: one row per image, a panel per level, legible text, and the colours mean what they say."""

import numpy as np
import pytest
import torch
from figure_text import outside_figure, overlapping, text_boxes
from matplotlib.figure import Figure
from matplotlib.image import imread

from replearn.dissection.concepts import Concept, ConceptMasks
from replearn.errors import ReplearnError
from replearn.shapes import generate
from replearn.viz.grid import DPI
from replearn.viz.shapes_plot import (
    OTHER_INK,
    concept_label,
    level_colours,
    level_overlay,
    plot_concept_levels,
    plot_level_units,
)


@pytest.fixture(scope="module")
def world():
    """16 generated images (2 of each object class), their labels and exact masks."""
    return generate(16, seed=3)


def _legible(fig: Figure) -> None:
    boxes = text_boxes(fig)
    assert not overlapping(boxes), overlapping(boxes)
    assert not outside_figure(fig), outside_figure(fig)


def test_plot_concept_levels_draws_image_and_three_levels_per_row(world, tmp_path):
    images, labels, masks = world
    fig = plot_concept_levels(images, masks, [0, 1, 2])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 4  # image, lines, parts, object for each image
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles[0] == "image" and "lines" in titles[1] and "parts" in titles[2] and "object" in titles[3]
    # Each row is labelled with its object, read off the level-3 mask.
    from replearn.shapes import CLASSES

    assert [fig.axes[4 * r].get_ylabel() for r in range(3)] == [CLASSES[int(labels[i])] for i in range(3)]
    legends = [ax.get_legend() for ax in fig.axes[-3:]]
    assert [len(lg.texts) for lg in legends] == [4, 6 + 1, 2]  # orientations; part types + other ink; object + rest
    assert "horizontal" in legends[0].texts[0].get_text() and legends[1].texts[0].get_text() == "l corner"
    _legible(fig)
    fig.savefig(tmp_path / "levels.png", dpi=DPI)
    assert imread(tmp_path / "levels.png")[..., :3].std() > 0.05


def test_plot_concept_levels_fills_a_given_axes_place(world):
    images, _, masks = world
    fig = Figure(figsize=(12, 6), layout="constrained")
    left, right = fig.subplots(1, 2)
    out = plot_concept_levels(images[:, 0], masks, torch.tensor([4, 5]), ax=right, title="")
    assert out is fig and right not in fig.axes and left in fig.axes
    assert len(fig.axes) == 1 + 2 * 4
    _legible(fig)


def test_plot_concept_levels_refuses_mismatched_inputs(world):
    images, _, masks = world
    with pytest.raises(ReplearnError, match="do not match masks"):
        plot_concept_levels(images[:3], masks, [0])
    with pytest.raises(ReplearnError, match=r"index \[16\] is invalid"):
        plot_concept_levels(images, masks, [16])


def test_level_overlay_colours_each_concept_and_greys_the_rest():
    image = torch.zeros(2, 3, dtype=torch.uint8)
    image[0] = 255  # the top row is ink
    masks = torch.zeros(2, 2, 3, dtype=torch.bool)
    masks[0, 0, 0] = True  # concept 0 only
    masks[1, 0, 1] = True  # concept 1 only
    masks[0, 0, 2] = masks[1, 0, 2] = True  # both
    colours = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    rgb = level_overlay(image, masks, colours)
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])
    np.testing.assert_allclose(rgb[0, 1], [0, 0, 1])
    np.testing.assert_allclose(rgb[0, 2], [0.5, 0, 0.5])  # overlaps mix
    np.testing.assert_allclose(rgb[1, 0], [1, 1, 1])  # paper
    masks[:, 0, 0] = False  # ink no concept covers: grey
    grey = [int(OTHER_INK[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    np.testing.assert_allclose(level_overlay(image, masks, colours)[0, 0], grey)


def test_level_colours_are_distinct_within_a_level_and_labels_read_well():
    for level, count in ((1, 4), (2, 6), (1, 12)):
        colours = level_colours(count, level)
        assert len({tuple(c) for c in colours.round(3)}) == count
    assert len({tuple(c) for c in level_colours(8, 3)}) == 1  # one object per image: one colour
    assert concept_label("stroke_diag_down").startswith("diagonal") and concept_label("class_house") == "house"
    assert concept_label("t_junction") == "t junction" and concept_label("edge_top_left") == "edge top left"


def test_plot_concept_levels_works_for_any_concept_masks():
    """MNIST-style masks (12 level-1 concepts, digits) draw the same way."""
    concepts = [Concept(f"edge_{i}", 1) for i in range(12)] + [Concept("loop", 2), Concept("digit_0", 3)]
    masks = torch.zeros(2, len(concepts), 28, 28, dtype=torch.bool)
    masks[:, :12, 10:12, 5:20] = True
    masks[0, 13, 8:20, 8:20] = True
    images = (masks.any(1, keepdim=True) * 255).to(torch.uint8)
    fig = plot_concept_levels(images, ConceptMasks(masks, concepts), [0, 1])
    assert len(fig.axes) == 8 and fig.axes[0].get_ylabel() == "digit 0" and fig.axes[4].get_ylabel() == ""
    assert len(fig.axes[-3].get_legend().texts) == 12


@pytest.mark.parametrize("units", [2, 0])
def test_plot_level_units_puts_masks_beside_units(world, units, tmp_path):
    images, _, masks = world
    k = 3
    unit_images = images[: units * k, 0].reshape(units, k, 28, 28)
    on = masks.masks[: units * k, 0].reshape(units, k, 28, 28)
    concept = masks.masks[: units * k, 6].reshape(units, k, 28, 28)
    titles = [f"blocks.{i} unit {i}\nsquare\nIoU 0.100" for i in range(units)]
    fig = plot_level_units(images, masks, [0, 1], 2, unit_images, on, concept, titles, title="Level 2: parts")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 + (units * k if units else 1)
    drawn = " ".join(text for text, _ in text_boxes(fig)) + " ".join(ax.get_ylabel() for ax in fig.axes)
    assert ("IoU 0.100" in drawn) == bool(units) and ("no unit's best concept" in drawn) == (not units)
    _legible(fig)
    fig.savefig(tmp_path / "units.png", dpi=DPI)


def test_plot_level_units_refuses_inconsistent_rows(world):
    images, _, masks = world
    some = torch.zeros(2, 3, 28, 28, dtype=torch.bool)
    with pytest.raises(ReplearnError, match="do not match"):
        plot_level_units(images, masks, [0], 1, some.to(torch.uint8), some, some, ["only one title"])
    with pytest.raises(ReplearnError, match="level=4 is invalid"):
        plot_level_units(images, masks, [0], 4, some.to(torch.uint8), some, some, ["a", "b"])
