"""The dissection's trained-in positive control: channels trained to detect parts must be labelled with their part.

A CNN learns the MNIST classes while five chosen channels of a 14x14 block and five of a 7x7 block are each
trained, by an auxiliary loss, to map one part (endpoint, junction, corner, curve, loop: the level-2 concepts).
Those ten channels are part detectors by construction, so the instrument must find them: a failure here is the
dissection's, not the network's.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from replearn.data import load_raw
from replearn.dissection import dissect_model
from replearn.dissection.concept_cache import load_concept_masks
from replearn.dissection.concepts import build_concept_masks
from replearn.models import build_model
from replearn.recording.receptive_field import receptive_fields

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

PARTS = ("endpoint", "junction", "corner", "curve", "loop")
MEAN, STD = 0.1307, 0.3081
# Depth 12 downsamples at blocks 0, 4 and 8: blocks 0-3 are 14x14, 4-7 are 7x7. Block 3 (15 px field) and
# block 5 (27 px) are the deepest 14x14 block and a 7x7 block whose fields hold a curve (about 13 px).
LAYERS = {"blocks.3": 14, "blocks.5": 7}
TRAIN_IMAGES, PROBE_IMAGES, EPOCHS = 3000, 1000, 24
AUX_WEIGHT, POS_WEIGHT = 10.0, 3.0  # parts cover 1-4% of the pixels: weight their loss and their positive cells


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - MEAN) / STD


def _registered_targets(masks: torch.Tensor, model, layer: str) -> torch.Tensor:
    """(N, 5, 28, 28) part masks -> (N, 5, h, w): the part's share of a (step+1)-px window centred on each unit's
    receptive-field centre, so a trained channel fires where its units actually look."""
    size, step, pad = receptive_fields(model)[layer]
    assert (size - 1) / 2 - pad == 0, "unit 0's field is not centred on pixel 0"  # odd kernels, "same" padding
    return F.avg_pool2d(masks, step + 1, stride=step, padding=step // 2)


def _train_part_detectors(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor):
    """A depth-12 CNN trained on the classes plus, for channels 0-4 of each of LAYERS, BCE against its part's map."""
    model = build_model("cnn", depth=12, channels=16, max_channels=32)
    targets = {layer: _registered_targets(masks, model, layer) for layer in LAYERS}
    assert all(t.shape[-1] == side for t, side in zip(targets.values(), LAYERS.values()))
    logits_of: dict[str, torch.Tensor] = {}
    for layer in LAYERS:
        # The norm's output is the block's pre-ReLU map: its ReLU is what dissection thresholds.
        norm = dict(model.named_modules())[f"{layer}.norm"]
        norm.register_forward_hook(lambda _m, _i, out, layer=layer: logits_of.__setitem__(layer, out))
    # Per channel a positive scale and a bias before the BCE: BatchNorm's own shift would take many steps to make
    # a channel sparse, and a positive scale keeps the order of its values, which is all a quantile threshold reads.
    readout = {layer: torch.tensor([[0.0] * 5, [-3.0] * 5], requires_grad=True) for layer in LAYERS}
    opt = torch.optim.Adam([*model.parameters(), *readout.values()], lr=2e-3)
    x, pos_weight = _normalize(images), torch.tensor(POS_WEIGHT)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[batch]), labels[batch])
            for layer, (log_scale, bias) in readout.items():
                part_logits = logits_of[layer][:, :5] * log_scale.exp()[:, None, None] + bias[:, None, None]
                loss = loss + AUX_WEIGHT * F.binary_cross_entropy_with_logits(
                    part_logits, targets[layer][batch], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def test_channels_trained_as_part_detectors_get_their_part_labels(mnist_root, cache_dir):
    raw = load_raw("mnist", mnist_root)
    images, labels = raw["train_images"][:TRAIN_IMAGES].unsqueeze(1), raw["train_labels"][:TRAIN_IMAGES].long()
    concepts = build_concept_masks(images, labels)
    parts = concepts.masks[:, [concepts.names().index(p) for p in PARTS]].float()  # (N, 5, 28, 28)
    model = _train_part_detectors(images, labels, parts)

    probe, probe_labels = raw["test_images"][:PROBE_IMAGES].unsqueeze(1), raw["test_labels"][:PROBE_IMAGES].long()
    with torch.no_grad():
        accuracy = float((model(_normalize(probe)).argmax(1) == probe_labels).float().mean())
    assert accuracy > 0.9  # the classifier trained too: the detectors sit in a working network
    probe_concepts = load_concept_masks(probe, probe_labels)
    result = dissect_model(model, probe, probe_concepts, layers=list(LAYERS), normalize=_normalize, std=STD)
    found = {layer: result[layer].unit_labels()[:5] for layer in LAYERS}
    ious = {layer: [round(float(v), 3) for v in result[layer].best_iou[:5]] for layer in LAYERS}
    assert found == {layer: list(PARTS) for layer in LAYERS}, f"labels {found}, best IoUs {ious}"
