"""replearn.shapes.generate: shapes, determinism, balance, exact masks at three levels, argument errors."""

import importlib

import pytest
import torch

from replearn.dissection.concepts import ConceptMasks
from replearn.errors import ReplearnError
from replearn.shapes import CLASSES, PART_TYPES, generate

N = 480  # a multiple of the 8 classes


@pytest.fixture(scope="module")
def batch():
    return generate(N, seed=3)


def test_shapes_and_dtypes(batch):
    images, labels, masks = batch
    assert images.shape == (N, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (N,) and labels.dtype == torch.int64
    assert isinstance(masks, ConceptMasks)
    assert masks.masks.shape == (N, 4 + len(PART_TYPES) + len(CLASSES), 28, 28) and masks.masks.dtype == torch.bool
    assert masks.levels().tolist() == [1] * 4 + [2] * len(PART_TYPES) + [3] * len(CLASSES)
    assert masks.names()[:4] == ["stroke_horizontal", "stroke_diag_up", "stroke_vertical", "stroke_diag_down"]
    assert masks.names()[-len(CLASSES):] == [f"class_{c}" for c in CLASSES]


def test_same_seed_same_bytes_other_seed_other_images(batch):
    images, labels, masks = generate(N, seed=3)
    assert torch.equal(images, batch[0]) and torch.equal(labels, batch[1]) and torch.equal(masks.masks, batch[2].masks)
    assert not torch.equal(generate(N, seed=4)[0], images)


def test_whole_blocks_are_stable_and_labels_do_not_change_the_images(batch, monkeypatch):
    gen = importlib.import_module("replearn.shapes.generate")  # the module (the package exports the function)
    monkeypatch.setattr(gen, "BLOCK", 40)  # blocks are seeded on their own: more images keep the first blocks
    assert torch.equal(generate(120, seed=3)[0][:80], generate(80, seed=3)[0])
    monkeypatch.undo()
    twin_images, twin_labels, _ = generate(N, seed=3, labels="strokes")
    assert torch.equal(twin_images, batch[0]) and set(twin_labels.tolist()) == {0, 1}


def test_classes_exactly_balanced(batch):
    assert torch.bincount(batch[1], minlength=len(CLASSES)).tolist() == [N // len(CLASSES)] * len(CLASSES)
    counts = torch.bincount(generate(61, seed=0)[1], minlength=len(CLASSES))
    assert counts.sum() == 61 and counts.max() - counts.min() <= 1  # not a multiple of 8: off by one at most


def test_level1_masks_are_exactly_the_ink(batch):
    images, _, masks = batch
    ink = images[:, 0] > 127
    level1 = masks.masks[:, :4]
    assert not (level1 & ~ink[:, None]).any(), "a level-1 pixel that is not ink"
    assert torch.equal(level1.any(1), ink), "ink that no level-1 mask covers"
    assert ink.flatten(1).any(1).all()


def test_level2_pixels_lie_on_level1_strokes(batch):
    _, labels, masks = batch
    level1 = masks.masks[:, :4].any(1, keepdim=True)
    level2 = masks.masks[:, 4:4 + len(PART_TYPES)]
    assert not (level2 & ~level1).any()
    assert level2.flatten(2).any(-1).any(0).all(), "some part type never drawn"


def test_only_the_own_class_mask_is_non_empty(batch):
    _, labels, masks = batch
    level3 = masks.masks[:, 4 + len(PART_TYPES):]
    present = level3.flatten(2).any(-1)  # (N, C)
    assert torch.equal(present, torch.nn.functional.one_hot(labels, len(CLASSES)).bool())
    level1 = masks.masks[:, :4].any(1)
    assert not (level3.any(1) & ~level1).any()  # the object is strokes too
    # Distractors are excluded: every image has ink outside its object.
    assert ((level1 & ~level3.any(1)).flatten(1).sum(1) > 0).float().mean() > 0.95


def test_every_part_type_appears_in_every_class():
    images, labels, masks = generate(1600, seed=5)
    present = masks.masks[:, 4:4 + len(PART_TYPES)].flatten(2).any(-1).float()  # (N, P)
    for c in range(len(CLASSES)):
        rate = present[labels == c].mean(0)
        assert (rate >= 0.05).all(), f"{CLASSES[c]}: part presence {dict(zip(PART_TYPES, rate.tolist()))}"


def test_size_56_draws_the_same_scenes_larger():
    small, labels, _ = generate(40, seed=2)
    large, labels56, masks = generate(40, seed=2, size=56)
    assert large.shape == (40, 1, 56, 56) and masks.masks.shape[-2:] == (56, 56)
    assert torch.equal(labels, labels56)
    assert torch.equal(masks.masks[:, :4].any(1), large[:, 0] > 127)
    # Downsampled, the large ink lands where the small ink is.
    pooled = torch.nn.functional.avg_pool2d((large > 127).float(), 2)[:, 0] > 0.5
    small_ink = small[:, 0] > 127
    assert (pooled & small_ink).sum() > 0.8 * pooled.sum()


@pytest.mark.parametrize("kwargs, key", [
    ({"n": 0, "seed": 0}, "n=0"), ({"n": 2.5, "seed": 0}, "n=2.5"), ({"n": True, "seed": 0}, "n=True"),
    ({"n": 8, "seed": -1}, "seed=-1"), ({"n": 8, "seed": 0, "size": 20}, "size=20"),
    ({"n": 8, "seed": 0, "size": 56.0}, "size=56.0"), ({"n": 8, "seed": 0, "labels": "digits"}, "labels='digits'"),
])
def test_bad_arguments_raise_one_line(kwargs, key):
    with pytest.raises(ReplearnError) as info:
        generate(**kwargs)
    message = str(info.value)
    assert key in message and "invalid" in message and "\n" not in message
