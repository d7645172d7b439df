"""The instrument on planted units over real MNIST digits: perfect detectors seen through a CNN's geometry keep
their label at every resolution; smeared maps and class detectors do not pass for parts.

Every planted unit is a map computed from the image (or its class) and passed through 1, 2 or 3 stride-2 3x3
box filters with padding 1 - the receptive-field geometry of a CNN's 14x14, 7x7 and 4x4 blocks - then dissected
with the geometry :class:`MapSource` would give those blocks.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from replearn.dissection import DissectionSettings, PlantedSource, dissect_layers
from replearn.dissection.concepts import build_concept_masks
from replearn.dissection.registration import layer_geometry
from replearn.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
N = 500
DETECTED = ["edge_left", "edge_top", "stroke_vertical", "endpoint", "corner", "loop", "digit_3"]
CONTROLS = ["centre_blob", "smeared_ink", "class_mean"]
LAYERS = ["full", "blocks.0", "blocks.1", "blocks.2"]  # 28x28, 14x14, 7x7, 4x4


def _gaussian(sigma: float) -> torch.Tensor:
    radius = torch.arange(-6, 7, dtype=torch.float32)
    g = torch.exp(-0.5 * (radius / sigma) ** 2)
    return (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]  # (1, 1, 13, 13)


def _through_convs(maps: torch.Tensor, depth: int) -> torch.Tensor:
    """(N, U, 28, 28) -> the same maps after ``depth`` stride-2 3x3 box filters with padding 1."""
    n, u = maps.shape[:2]
    x = maps.reshape(n * u, 1, *maps.shape[2:])
    for _ in range(depth):
        x = F.conv2d(x, torch.full((1, 1, 3, 3), 1 / 9), stride=2, padding=1)
    return x.reshape(n, u, *x.shape[2:])


@pytest.fixture(scope="module")
def planted(mnist_root):
    """{layer: LayerDissection} of the planted units (DETECTED, then CONTROLS) at each resolution, and the names."""
    from replearn.data import load_raw

    raw = load_raw("mnist", str(mnist_root), download=False)
    images, labels = raw["test_images"][:N].unsqueeze(1), raw["test_labels"][:N].long()
    concepts = build_concept_masks(images, labels, [str(i) for i in range(10)])
    names = concepts.names()
    masks = concepts.masks.float()  # (N, K, 28, 28)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    blob = torch.exp(-((yy - 13.5) ** 2 + (xx - 13.5) ** 2) / (2 * 3.0**2)).expand(N, 28, 28)  # the same in every image
    smeared = F.conv2d(images.float() / 255, _gaussian(2.0), padding=6)[:, 0]  # blurred ink density
    foreground = masks[:, names.index("digit_0"):].amax(1)
    class_mean = torch.stack([foreground[labels == c].mean(0) for c in range(10)])[labels]  # no image detail
    full = torch.cat([masks[:, [names.index(c) for c in DETECTED]], torch.stack([blob, smeared, class_mean], 1)], 1)
    cnn = build_model("cnn", depth=3, channels=2, max_channels=2)
    maps, geometry = {"full": full}, {}
    for depth in (1, 2, 3):
        name = f"blocks.{depth - 1}"
        maps[name] = _through_convs(full, depth)
        geometry[name] = layer_geometry(cnn, name, tuple(maps[name].shape[-2:]), (28, 28))
    result = dissect_layers(PlantedSource(maps, images, geometry), concepts, DissectionSettings(), labels=labels)
    return result, names


def test_perfect_detectors_keep_their_label_at_every_resolution(planted):
    result, names = planted
    for layer in LAYERS:
        assert result[layer].unit_labels()[: len(DETECTED)] == DETECTED, layer
    # edge_left at 7x7: bilinear upsampling off the conv grid labelled it digit_1
    assert result["blocks.1"].unit_labels()[0] == "edge_left"
    assert result["blocks.2"].concept_levels[result["blocks.2"].best_concept[2]] == 1  # vertical stroke at 4x4: level 1


def test_ceilings_fall_with_the_grid_and_perfect_detectors_reach_them(planted):
    result, names = planted
    ceilings = torch.stack([result[layer].ceiling for layer in LAYERS])  # (4, K)
    for concept in ("edge_left", "endpoint", "corner"):
        column = ceilings[:, names.index(concept)].tolist()
        assert column[0] == 1.0 and column == sorted(column, reverse=True), (concept, column)
        assert column[-1] < 0.5 * column[1]  # a 4x4 grid cannot draw a thin part
    for layer in LAYERS:
        ratio = result[layer].best_iou_vs_ceiling()[: len(DETECTED)]
        assert ((ratio > 0.4) & (ratio < 1.6)).all(), (layer, ratio)
        summary = result[layer].mean_best_iou_vs_ceiling()
        assert set(summary) == {"l1", "l2", "l3"} and all(math.isfinite(v) for v in summary.values())


def test_smeared_maps_get_no_part_label(planted):
    result, names = planted
    for layer in LAYERS:
        d = result[layer]
        labels = d.unit_labels()[len(DETECTED):]
        levels = [int(d.concept_levels[names.index(c)]) if c else None for c in labels]
        assert levels[0] != 2 and levels[1] != 2, (layer, labels)
        assert (d.ink_baseline >= 0).all() and d.ink_baseline[names.index("junction")] > 0.04


def test_class_detectors_fall_to_the_null_and_part_detectors_survive_it(planted):
    result, names = planted
    mean_unit = len(DETECTED) + CONTROLS.index("class_mean")
    parts = [DETECTED.index(c) for c in ("endpoint", "corner", "loop")]
    for layer in LAYERS:
        d = result[layer]
        assert d.labelled_before_null[mean_unit] and not d.labelled[mean_unit], layer
        assert d.labelled[parts].all() and (d.best_iou[parts] > d.null_iou[parts]).all(), layer
        before, after = d.level_fractions(before_null=True), d.level_fractions()
        assert after["unlabelled"] > before["unlabelled"]
