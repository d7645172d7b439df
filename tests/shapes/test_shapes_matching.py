"""Ink and stroke orientation are matched across the object classes, and the strokes twin is a clean rule."""

import pytest
import torch

from replearn.shapes import CLASSES, generate
from replearn.shapes.generate import generate_arrays
from replearn.shapes.labels import stroke_labels

N = 3200  # 400 images per class


@pytest.fixture(scope="module")
def data():
    return generate_arrays(N, seed=11, with_codes=False)


def _class_means(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([values[labels == c].float().mean(0) for c in range(len(CLASSES))])


def _max_deviation(means: torch.Tensor) -> torch.Tensor:
    """Per column: the largest |class mean - mean over classes| relative to that mean."""
    centre = means.mean(0)
    return ((means - centre).abs().max(0).values / centre)


def test_ink_amount_matched_within_10_percent(data):
    ink = (data["images"][:, 0] > 127).flatten(1).sum(1)
    deviation = _max_deviation(_class_means(ink[:, None], data["parts"]))
    assert deviation.item() <= 0.10, f"per-class mean ink deviates {deviation.item():.1%} from the mean"


def test_orientation_histogram_matched_within_10_percent(data):
    ink = data["ink"].float()  # (N, 4) level-1 pixels per orientation
    counts = _max_deviation(_class_means(ink, data["parts"]))
    shares = _max_deviation(_class_means(ink / ink.sum(1, keepdim=True), data["parts"]))
    assert (counts <= 0.10).all(), f"per-orientation pixel counts deviate by {counts.tolist()}"
    assert (shares <= 0.10).all(), f"per-orientation shares deviate by {shares.tolist()}"


def test_twin_labels_follow_the_rule_and_are_balanced_within_each_class(data):
    assert torch.equal(data["strokes"], stroke_labels(data["ink"]))
    assert torch.equal(data["strokes"], (data["ink"][:, 2] > data["ink"][:, 0]).long())
    for c in range(len(CLASSES)):
        counts = torch.bincount(data["strokes"][data["parts"] == c], minlength=2)
        assert (counts - counts.sum() / 2).abs().max() <= 3, f"{CLASSES[c]}: twin counts {counts.tolist()}"
    margin = (data["ink"][:, 2] - data["ink"][:, 0]).abs()
    assert (margin < 6).float().mean() < 0.02  # the rule almost never rests on a near tie


def test_twin_rule_on_the_level1_masks():
    images, labels, masks = generate(240, seed=9, labels="strokes")
    counts = masks.masks[:, :4].flatten(2).sum(-1)  # (N, 4)
    assert torch.equal(labels, stroke_labels(counts))
