"""How a label is decided: threshold, ink baseline, ceiling, the within-class null; the head is its class."""

from __future__ import annotations

import json
import math

import pytest
import torch

from replearn.dissection import DissectionSettings, LayerDissection, PlantedSource, dissect_layers, dissect_model
from replearn.dissection.concepts import ConceptMasks, build_concept_masks
from replearn.dissection.examples import top_labelled_units, unit_examples
from replearn.dissection.null import classes_from_masks, within_class_permutations
from replearn.dissection.registration import Geometry, upsample
from replearn.dissection.result import choose_concepts
from replearn.errors import ReplearnError
from replearn.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
MEAN, STD = 0.1307, 0.3081


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - MEAN) / STD


@pytest.fixture(scope="module")
def strokes():
    """60 images of one or two random bars (labels 0-9 at random) and their concept masks."""
    gen = torch.Generator().manual_seed(0)
    images = torch.zeros(60, 1, 28, 28, dtype=torch.uint8)
    for i in range(60):
        y, x = torch.randint(6, 20, (2,), generator=gen).tolist()
        images[i, 0, y - 5:y + 5, x - 1:x + 2] = 255
        if i % 2:
            images[i, 0, y:y + 3, x - 6:x + 6] = 255
    labels = torch.randint(0, 10, (60,), generator=gen)
    return images, labels, build_concept_masks(images, labels)


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_the_head_is_labelled_by_its_class_and_counts_as_no_evidence(strokes, name):
    images, labels, concepts = strokes
    model = build_model(name, depth=2, **({"channels": 4, "max_channels": 4} if name == "cnn" else {"width": 8}))
    result = dissect_model(model, images, concepts, normalize=_normalize, std=STD,
                           settings=DissectionSettings(grad_images=30, quantile=0.05))
    head = result["head"]
    assert head.method == "class" and head.unit_labels() == [f"digit_{c}" for c in range(10)]
    assert head.best_iou.isnan().all() and head.ceiling.isnan().all() and head.iou.isnan().all()
    assert all(math.isnan(v) for v in head.level_fractions().values())
    assert all(math.isnan(v) for v in head.mean_best_iou_vs_ceiling().values())
    assert head.top_units() == {} and top_labelled_units(head) == []
    torch.testing.assert_close(head.peaks, model.eval()(_normalize(images)).detach())  # the logits pick its images
    ex = unit_examples(model, head, images, concepts, [3], k=2, normalize=_normalize, std=STD)
    assert not ex.unit_masks.any() and ex.concepts == ["digit_3"]  # a logit has no map of its own
    hidden = result["blocks.1"]
    assert hidden.method == ("activation" if name == "cnn" else "grad_x_input")
    json.dumps({layer: d.summary() for layer, d in result.items()})
    three = ConceptMasks(concepts.masks[:, :20], concepts.concepts[:20])  # digit_0 to digit_2 only
    assert dissect_model(model, images, three, ["head"])["head"].unit_labels() == ["digit_0", "digit_1", "digit_2",
                                                                                     *[None] * 7]
    shifted = dissect_model(model, images, concepts, ["head"], labels=(labels + 1) % 10)["head"]
    assert shifted.unit_labels() == [f"digit_{(c - 1) % 10}" for c in range(10)]  # the concept of class c's images
    unrelated = torch.arange(60) % 10  # a task whose classes are not the level-3 concepts: no logit gets a label
    assert dissect_model(model, images, concepts, ["head"], labels=unrelated)["head"].unit_labels() == [None] * 10


def test_within_class_permutations_move_each_image_inside_its_class():
    classes = torch.tensor([0, 1, 0, 2, 1, 0, -1, -1, 1, 3, 2])
    perms = within_class_permutations(classes, 5, seed=7)
    assert perms.shape == (5, 11) and torch.equal(perms, within_class_permutations(classes, 5, seed=7))
    for perm in perms:
        assert sorted(perm.tolist()) == list(range(11))
        assert torch.equal(classes[perm], classes)
        moved = perm != torch.arange(11)
        assert moved[classes != 3].all() and not moved[9]  # a class of one image can only keep its own masks
    assert not torch.equal(perms[0], perms[1])


def test_classes_are_read_off_the_level3_masks(strokes):
    images, labels, concepts = strokes
    assert torch.equal(classes_from_masks(concepts.masks, concepts.levels()), labels)
    blank = concepts.masks.clone()
    blank[0, concepts.levels() == 3] = False
    assert classes_from_masks(blank, concepts.levels())[0] == -1


def test_the_null_quantile_equals_a_direct_recount(strokes):
    """Each unit's null IoU is recounted here from its on pixels and the permuted masks of its best concept."""
    images, labels, concepts = strokes
    gen = torch.Generator().manual_seed(1)
    ink = images[:, 0].float() / 255
    maps = torch.stack([ink * torch.rand(60, 28, 28, generator=gen) for _ in range(3)]
                       + [torch.rand(60, 28, 28, generator=gen)], 1)[:, :, ::2, ::2].contiguous()  # (60, 4, 14, 14)
    geometry = Geometry((14, 14), 0.0, 2.0)
    settings = DissectionSettings(quantile=0.05, null_permutations=6, null_quantile=1.0, iou_threshold=0.0, seed=3)
    d = dissect_layers(PlantedSource({"l": maps}, images, {"l": geometry}), concepts, settings, labels=labels)["l"]
    on = upsample(maps, geometry, (28, 28)) >= d.thresholds[None, :, None, None]  # (N, U, 28, 28)
    perms = within_class_permutations(labels, 6, seed=3)
    for u in range(4):
        if not d.labelled_before_null[u]:
            assert d.null_iou[u].isnan()
            continue
        mask = concepts.masks[:, d.best_concept[u]]  # (N, 28, 28)
        scores = [(on[:, u] & mask[p]).sum().item() / (on[:, u] | mask[p]).sum().item() for p in perms]
        assert float(d.null_iou[u]) == pytest.approx(max(scores), abs=1e-9)
        assert float(d.best_iou[u]) == pytest.approx(float((on[:, u] & mask).sum() / (on[:, u] | mask).sum()))
    assert d.labelled_before_null.any()


def test_gradient_layers_permute_only_their_own_images(strokes):
    images, labels, concepts = strokes
    model = build_model("mlp", depth=2, width=8)
    result = dissect_model(model, images, concepts, ["blocks.0"], _normalize, STD,
                           DissectionSettings(grad_images=25, quantile=0.05), labels=labels)["blocks.0"]
    assert result.images == 25 and result.null_iou.shape == (8,)
    present = concepts.masks[:25].flatten(2).any(2).any(0)  # (K,) concepts in the dissected images
    assert result.geometry == Geometry.full((28, 28)) and (result.ceiling[present] == 1).all()


def test_a_label_needs_the_threshold_the_ink_baseline_and_the_null():
    iou = torch.tensor([[0.05, 0.20], [0.06, 0.02], [0.03, 0.01], [0.09, 0.30]], dtype=torch.float64)
    levels, names = torch.tensor([1, 3]), ["edge_left", "digit_3"]
    ceiling = torch.tensor([0.06, 0.30], dtype=torch.float64)
    ink = torch.tensor([0.055, 0.25], dtype=torch.float64)
    null = torch.tensor([0.01, 0.07, math.nan, 0.25], dtype=torch.float64)
    d = LayerDissection("l", "activation", iou, torch.zeros(4), names, levels, 0.04, 10, ceiling=ceiling,
                        ink_baseline=ink, null_iou=null)
    # unit 0: neither concept beats its ink baseline (its best is its highest IoU); unit 1: edge_left beats the
    # threshold and the ink but not the null; unit 2: nothing beats 0.04; unit 3: both concepts at or past their
    # ceiling (the ratio is capped at 1), so the higher IoU wins
    assert d.best_concept.tolist() == [1, 0, 0, 1]
    assert d.labelled_before_null.tolist() == [False, True, False, True]
    assert d.unit_labels() == [None, None, None, "digit_3"] and d.unit_labels(before_null=True)[1] == "edge_left"
    assert d.level_fractions(before_null=True) == {"l1": 0.25, "l2": 0.0, "l3": 0.25, "unlabelled": 0.5}
    assert d.level_fractions() == {"l1": 0.0, "l2": 0.0, "l3": 0.25, "unlabelled": 0.75}
    torch.testing.assert_close(d.best_iou_vs_ceiling(), torch.tensor([2 / 3, 1.0, 0.5, 1.0], dtype=torch.float64))
    assert d.mean_best_iou_vs_ceiling()["l1"] == pytest.approx((0.05 / 0.06 + 1.0 + 0.5 + 1.5) / 4)
    summary = json.loads(json.dumps(d.summary()))
    assert summary["best_concept_before_null"] == [None, "edge_left", None, "digit_3"]
    assert summary["ceiling"] == [0.06, 0.3] and summary["ink_baseline"] == [0.055, 0.25]
    assert summary["fractions_before_null"]["l1"] == 0.25 and summary["best_iou_vs_ceiling"][0] == pytest.approx(0.66667)
    # raw IoU alone (no ceiling) would pick digit_3 for the perfect edge detector at 4x4 that reaches its ceiling
    perfect_edge = torch.tensor([[0.055, 0.056]], dtype=torch.float64)
    assert choose_concepts(perfect_edge, 0.04).tolist() == [1]
    assert choose_concepts(perfect_edge, 0.04, torch.tensor([0.055, 0.268])).tolist() == [0]


@pytest.mark.parametrize("field,value", [("null_permutations", -1), ("null_quantile", 0.0), ("null_quantile", 1.5),
                                         ("ceiling_images", 0), ("ink_sigma", 0.0), ("ink_sigma", math.inf)])
def test_new_settings_are_checked(field, value):
    with pytest.raises(ReplearnError, match=field):
        DissectionSettings(**{field: value}).check()
