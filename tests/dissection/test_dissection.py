"""Network dissection: the machinery proven on planted units, the gradient proxy against autograd, bad input."""

from __future__ import annotations

import pytest
import torch

from replearn.dissection import (
    DissectionSettings,
    LayerDissection,
    MapSource,
    PlantedSource,
    dissect_layers,
    dissect_model,
)
from replearn.dissection.concepts import Concept, ConceptMasks, build_concept_masks
from replearn.dissection.maps import _mlp_grad_maps, _reverse_grad_maps, layer_method
from replearn.errors import ReplearnError
from replearn.models import build_model

MEAN, STD = 0.1307, 0.3081


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - MEAN) / STD


def _synthetic_concepts(n: int = 300, seed: int = 0):
    """Random blob 'digits' with labels; concepts: a level-1 left half, a level-2 centre disc, digit_3, digit_5."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    yy, xx = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    centres = torch.randint(8, 20, (n, 2), generator=gen)
    ink = ((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2) < 36  # (N, 28, 28)
    left = ink & (xx[None] < centres[:, 1, None, None])
    disc = ((yy[None] - 14) ** 2 + (xx[None] - 14) ** 2) < 4
    masks = torch.stack([left, disc.expand(n, -1, -1), ink & (labels == 3)[:, None, None],
                         ink & (labels == 5)[:, None, None]], 1)
    concepts = [Concept("half_left", 1), Concept("centre", 2), Concept("digit_3", 3), Concept("digit_5", 3)]
    return ConceptMasks(masks, concepts), ink, labels


def test_planted_units_are_labelled_by_what_they_were_made_to_detect():
    concepts, ink, labels = _synthetic_concepts()
    gen = torch.Generator().manual_seed(1)
    digit3 = (ink & (labels == 3)[:, None, None]).float()  # (N, 28, 28): fires on the foreground of 3s only
    noise = torch.rand(ink.shape, generator=gen)
    dead = torch.zeros(ink.shape)
    # A 7x7 map of the 3-detector by 4x4 average pooling: its cells tile the image (PlantedSource's default
    # geometry for maps smaller than the image), and the dissection upsamples it back to 28x28 on those tiles.
    coarse3 = torch.nn.functional.avg_pool2d(digit3[:, None], 4)[:, 0]
    maps = {"layer": torch.stack([digit3, noise, dead], 1), "coarse": torch.stack([coarse3, noise[:, ::4, ::4]], 1)}
    result = dissect_layers(PlantedSource(maps), concepts, DissectionSettings(quantile=0.02))
    labels_full = result["layer"].unit_labels()
    assert labels_full == ["digit_3", None, None]
    assert result["layer"].best_iou[0] > 0.3  # a perfect 3-detector at a 2% quantile covers most 3-ink
    assert result["layer"].best_iou[1] < 0.04 and result["layer"].best_iou[2] == 0
    assert result["coarse"].unit_labels() == ["digit_3", None]
    fractions = result["layer"].level_fractions()
    assert fractions == pytest.approx({"l1": 0.0, "l2": 0.0, "l3": 1 / 3, "unlabelled": 2 / 3})
    assert result["layer"].top_units()["digit_3"][0][0] == 0


def test_iou_equals_a_direct_count():
    """IoU accumulated over chunks equals |A ∩ B| / |A ∪ B| counted over the whole set at once."""
    concepts, ink, labels = _synthetic_concepts(n=150)
    gen = torch.Generator().manual_seed(3)
    maps = torch.rand(150, 2, 28, 28, generator=gen)
    settings = DissectionSettings(quantile=0.1, quantile_images=150)
    result = dissect_layers(PlantedSource({"l": maps}), concepts, settings)["l"]
    for unit in range(2):
        threshold = maps[:, unit].flatten().topk(int(0.1 * 150 * 784) + 1).values[-2]
        on = maps[:, unit] >= threshold
        for k in range(4):
            c = concepts.masks[:, k]
            expected = (on & c).sum() / (on | c).sum()
            assert float(result.iou[unit, k]) == pytest.approx(float(expected), abs=2e-3)


def test_recorded_peaks_pick_the_same_examples_as_recomputed_maps():
    """The dissection keeps each unit's peak per image; the examples found from them equal a fresh pass over the maps."""
    from replearn.dissection.examples import unit_examples

    concepts, ink, _ = _synthetic_concepts(n=120)
    torch.manual_seed(0)
    model = build_model("mlp", depth=2, width=16)
    images = (ink[:, None].float() * 255).to(torch.uint8)
    result = dissect_model(model, images, concepts, ["blocks.1"], _normalize, STD,
                           DissectionSettings(grad_images=120, quantile=0.05))["blocks.1"]
    maps = _mlp_grad_maps(model, ["blocks.1"], images, _normalize, STD)["blocks.1"]  # (N, U, 28, 28)
    torch.testing.assert_close(result.peaks, maps.flatten(2).amax(2), rtol=1e-5, atol=1e-6)
    units = [0, 3, 7]
    fast = unit_examples(model, result, images, concepts, units, k=4, normalize=_normalize, std=STD)
    result.peaks = None  # the old path: the maps computed again
    slow = unit_examples(model, result, images, concepts, units, k=4, normalize=_normalize, std=STD)
    assert torch.equal(fast.indices, slow.indices) and torch.equal(fast.unit_masks, slow.unit_masks)


@pytest.mark.parametrize("kwargs", [{}, {"norm": "batchnorm"}, {"residual": True}, {"norm": "layernorm", "activation": "gelu"}])
def test_mlp_gradient_maps_match_autograd(kwargs):
    torch.manual_seed(0)
    model = build_model("mlp", depth=3, width=12, **kwargs).eval()
    if kwargs.get("norm") == "batchnorm":  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    images = (torch.rand(6, 1, 28, 28) * 255 * (torch.rand(6, 1, 28, 28) > 0.7)).to(torch.uint8)
    chained = _mlp_grad_maps(model, ["blocks.0", "blocks.2", "head"], images, _normalize, STD)
    for layer in ("blocks.0", "blocks.2", "head"):
        reverse = _reverse_grad_maps(model, layer, images, _normalize, STD)
        assert chained[layer].shape == reverse.shape == (6, 12 if layer != "head" else 10, 28, 28)
        torch.testing.assert_close(chained[layer], reverse, atol=1e-5, rtol=1e-4)
        # Zero wherever the image has no ink (x equals the black baseline there).
        assert (chained[layer].abs().sum(1) * (images[:, 0] == 0)).max() == 0


def test_activation_maps_match_torchvision_feature_extractor():
    from torchvision.models.feature_extraction import create_feature_extractor

    model = build_model("cnn", depth=3, channels=4, max_channels=8).eval()
    images = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)
    source = MapSource(model, ["blocks.0", "blocks.2"], images, _normalize, STD)
    oracle = create_feature_extractor(model, return_nodes=["blocks.0", "blocks.2"])(_normalize(images))
    for name in ("blocks.0", "blocks.2"):
        torch.testing.assert_close(source.acts[name], oracle[name].detach())
    assert source.methods == {"blocks.0": "activation", "blocks.2": "activation"}


def test_map_method_per_layer_and_bad_requests():
    cnn = build_model("cnn", depth=2, channels=4, max_channels=4)
    mlp = build_model("mlp", depth=2, width=8)
    assert layer_method(cnn, "blocks.1") == "activation"
    assert layer_method(cnn, "head") == layer_method(mlp, "head") == "class"  # the logits are their class
    assert layer_method(mlp, "blocks.0") == "grad_x_input"
    with pytest.raises(ReplearnError, match="no spatial map.*grad_x_input"):
        layer_method(mlp, "blocks.0", "activation")
    with pytest.raises(ReplearnError, match="invalid"):
        layer_method(mlp, "blocks.0", "saliency")


def test_bad_input_is_one_line():
    concepts, _, _ = _synthetic_concepts(n=20)
    model = build_model("cnn", depth=1, channels=2, max_channels=2)
    with pytest.raises(ReplearnError, match="empty"):
        dissect_model(model, torch.zeros(0, 1, 28, 28, dtype=torch.uint8), concepts, normalize=_normalize)
    with pytest.raises(ReplearnError, match="cover 20 images but 40"):
        dissect_model(model, torch.zeros(40, 1, 28, 28, dtype=torch.uint8), concepts, normalize=_normalize)
    with pytest.raises(ReplearnError, match="quantile"):
        DissectionSettings(quantile=0.0).check()
    empty = ConceptMasks(torch.zeros(0, 4, 28, 28, dtype=torch.bool), concepts.concepts)
    with pytest.raises(ReplearnError, match="empty"):
        dissect_layers(PlantedSource({"l": torch.zeros(0, 1, 4, 4)}), empty)


def test_layer_summary_is_json_ready():
    iou = torch.tensor([[0.01, 0.2], [0.03, 0.02]], dtype=torch.float64)
    d = LayerDissection("blocks.0", "activation", iou, torch.zeros(2), ["edge_left", "digit_3"],
                        torch.tensor([1, 3]), 0.04, 10)
    summary = d.summary()
    assert summary["best_concept"] == ["digit_3", None]
    assert summary["fractions"] == {"l1": 0.0, "l2": 0.0, "l3": 0.5, "unlabelled": 0.5}
    assert summary["mean_best_iou"]["l1"] == pytest.approx(0.02)
    assert summary["mean_best_iou"]["l2"] != summary["mean_best_iou"]["l2"]  # NaN: no level-2 concept
    assert summary["top_units"] == {"digit_3": [[0, 0.2]]}


def _sobel_cnn(filters: list[torch.Tensor]):
    """A one-block CNN (stride 2, no norm) whose first channels are hand-set 3x3 filters, the rest zero."""
    model = build_model("cnn", depth=1, channels=len(filters) + 1, max_channels=len(filters) + 1, norm="none").eval()
    with torch.no_grad():
        model.blocks[0].conv.weight.zero_()
        model.blocks[0].conv.bias.zero_()
        for i, f in enumerate(filters):
            model.blocks[0].conv.weight[i, 0] = f
    return model


def test_planted_edge_filters_on_real_digits(mnist_root):
    """A hand-set vertical-edge conv unit is labelled a vertical edge, a horizontal one a horizontal edge."""
    from replearn.data import load_raw

    raw = load_raw("mnist", str(mnist_root), download=False)
    images, labels = raw["test_images"][:600].unsqueeze(1), raw["test_labels"][:600].long()
    concepts = build_concept_masks(images, labels, [str(i) for i in range(10)])
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])  # ink to the right: a stroke's left edge
    model = _sobel_cnn([sobel_x, sobel_x.T.contiguous()])
    result = dissect_model(model, images, concepts, layers=["blocks.0"], normalize=_normalize, std=STD)["blocks.0"]
    names = result.unit_labels()
    assert names[0] is not None and names[0].startswith("edge_") and "vertical" in _orientation(names[0])
    assert names[1] is not None and names[1].startswith("edge_") and "horizontal" in _orientation(names[1])
    assert names[2] is None  # the all-zero channel


def _orientation(name: str) -> str:
    """The orientation a concept name stands for (edges are named by the side of the stroke they bound)."""
    sides = {"left": "vertical", "right": "vertical", "top": "horizontal", "bottom": "horizontal"}
    part = name.removeprefix("edge_")
    return sides.get(part, part)
