"""Dissection on the shapes world: the generator's exact masks, through the public API.

Planted "perfect detector" units (their maps are a generator mask, at full resolution or average-pooled
to 14x14) get that mask's label; a run's masks come from ``concepts_for``, which gives
the generator's masks for data=shapes and the morphology masks (byte for byte) for MNIST.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import replearn.dissection.concept_cache as concept_cache
import replearn.shapes.cache as shapes_cache
from replearn.data import load_splits
from replearn.dissection import DissectionSettings, PlantedSource, dissect_layers
from replearn.dissection.concept_cache import concepts_for, load_concept_masks
from replearn.dissection.concepts import class_concept_name
from replearn.errors import ReplearnError
from replearn.shapes import CLASSES, PART_TYPES, concepts, generate

pytestmark = pytest.mark.usefixtures("one_thread")
N = 96  # 12 images per object class


def _mask(masks, name: str) -> torch.Tensor:
    return masks.masks[:, masks.names().index(name)].float()


def test_the_concepts_are_four_orientations_six_parts_and_the_object_classes():
    levels = {lv: [c.name for c in concepts() if c.level == lv] for lv in (1, 2, 3)}
    assert len(levels[1]) == 4 and all(n.startswith("stroke_") for n in levels[1])
    assert levels[2] == list(PART_TYPES) and len(PART_TYPES) == 6
    assert levels[3] == [class_concept_name(c) for c in CLASSES] and len(CLASSES) == 8


def test_planted_detectors_get_the_label_of_the_generator_mask_they_equal():
    images, labels, masks = generate(N, seed=5)
    stroke, obj = masks.names()[0], class_concept_name(CLASSES[int(labels[0])])
    square, lines, objects = _mask(masks, "square"), _mask(masks, stroke), _mask(masks, obj)
    noise = torch.rand(square.shape, generator=torch.Generator().manual_seed(0))
    pool = nn.functional.avg_pool2d  # a deeper conv layer's 14x14 geometry: dissection upsamples it back
    maps = {
        "full": torch.stack([square, lines, noise], 1),
        "coarse": pool(torch.stack([square, objects], 1), 2),
    }
    result = dissect_layers(PlantedSource(maps, images), masks, DissectionSettings(quantile=0.02, quantile_images=N),
                            labels=labels)
    assert result["full"].unit_labels() == ["square", stroke, None]
    assert result["coarse"].unit_labels() == ["square", obj]
    assert result["full"].best_iou[0] > 0.3 and result["coarse"].best_iou[1] > 0.3
    assert result["full"].level_fractions() == pytest.approx({"l1": 1 / 3, "l2": 1 / 3, "l3": 0.0, "unlabelled": 1 / 3})


SMALL = {"train": (400, 101), "test": (160, 102)}


@pytest.fixture
def small_shapes(monkeypatch):
    """Small generated splits instead of 60k/10k (the generator and the cache are the real ones)."""
    monkeypatch.setattr(shapes_cache, "SPLITS", SMALL)
    return OmegaConf.create({"name": "shapes", "size": 28, "labels": "parts", "val_size": 80, "split_seed": 0})


def _no_morphology(*args, **kwargs):
    raise AssertionError("MNIST morphology masks were built for a shapes run")


def test_a_shapes_run_gets_the_generator_masks(small_shapes, monkeypatch):
    monkeypatch.setattr(concept_cache, "load_concept_masks", _no_morphology)
    splits = load_splits(small_shapes)
    for s in (splits, splits.to(torch.device("cpu"))):  # moving the splits keeps what the masks need
        got = concepts_for(s, 50)
        expected = shapes_cache.concept_masks_for_split(small_shapes, "test", torch.arange(50))
        assert got.names() == expected.names() and torch.equal(got.masks, expected.masks)
    assert concepts_for(splits, 10_000).masks.shape == (160, 18, 28, 28)  # n is capped at the split
    twin = load_splits(OmegaConf.merge(small_shapes, {"labels": "strokes"}))
    assert torch.equal(concepts_for(twin, 50).masks, got.masks)  # level 3 stays the objects for the twin
    splits.test_x = splits.test_x.flip(0)
    with pytest.raises(ReplearnError, match="not the generator's"):
        concepts_for(splits, 50)
    splits.data_cfg = None
    with pytest.raises(ReplearnError, match="no data config"):
        concepts_for(splits, 50)


def test_other_data_sets_keep_the_morphology_masks(splits):
    got = concepts_for(splits, 40)
    expected = load_concept_masks(splits.test_x[:40], splits.test_y[:40], list(splits.classes))
    assert got.names() == expected.names() and torch.equal(got.masks, expected.masks)
