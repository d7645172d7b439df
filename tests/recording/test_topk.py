"""Top-k examples: streaming equals a brute-force pass, ties resolve by dataset index, crops follow the box."""

import pytest
import torch

from replearn.errors import ReplearnError
from replearn.models import CNN, MLP
from replearn.recording.hooks import capture_activations
from replearn.recording.receptive_field import receptive_field_box, receptive_fields
from replearn.recording.topk import crop_receptive_fields, top_k_examples, top_k_for_layer, top_k_for_layers


def _brute_force(acts: torch.Tensor, k: int):
    """Reference by plain Python sorting: key (-value, dataset index); map max = first row-major argmax."""
    if acts.dim() == 4:
        n, c, h, w = acts.shape
        flat = acts.reshape(n, c, h * w)
        scores = flat.amax(2)
        first = [[next(i for i in range(h * w) if flat[e, u, i] == scores[e, u]) for u in range(c)] for e in range(n)]
    else:
        scores = acts
    values, indices, positions = [], [], []
    for u in range(scores.shape[1]):
        order = sorted(range(scores.shape[0]), key=lambda e: (-float(scores[e, u]), e))[:k]
        values.append([float(scores[e, u]) for e in order])
        indices.append(order)
        if acts.dim() == 4:
            positions.append([divmod(first[e][u], acts.shape[3]) for e in order])
    pos = torch.tensor(positions) if acts.dim() == 4 else None
    return torch.tensor(values), torch.tensor(indices), pos


@pytest.mark.parametrize("shape", [(30, 5), (20, 3, 4, 4)])
def test_top_k_examples_equals_brute_force_with_ties(shape):
    # Small integers make many exact ties, both across examples and inside a map.
    acts = torch.randint(0, 4, shape).float()
    top = top_k_examples(acts, k=6)
    values, indices, positions = _brute_force(acts, 6)
    assert torch.equal(top.values, values) and torch.equal(top.indices, indices)
    if positions is None:
        assert top.positions is None
        assert torch.equal(top.values, torch.topk(acts.t(), 6).values)
    else:
        assert torch.equal(top.positions, positions)


@pytest.mark.parametrize("kind,layer", [("cnn", "blocks.0"), ("cnn", "blocks.2"), ("mlp", "blocks.1"), ("mlp", "head")])
def test_streaming_matches_full_capture(kind, layer):
    model = CNN(depth=3, channels=4) if kind == "cnn" else MLP(depth=2, width=8)
    model.eval()
    base = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    images = torch.cat([base, base[:5], torch.zeros(4, 1, 28, 28, dtype=torch.uint8)])  # duplicates -> ties
    norm = lambda x: x.float() / 255  # noqa: E731
    units = [3, 0, 1]
    # Same batch size as the brute-force capture, so both see bitwise the same activations.
    top = top_k_for_layer(model, layer, images, k=7, normalize=norm, batch_size=5, units=units)
    full = capture_activations(model, images, layers=[layer], batch_size=5, normalize=norm)[layer][:, units]
    values, indices, positions = _brute_force(full, 7)
    assert torch.equal(top.values, values) and torch.equal(top.indices, indices)
    assert (top.positions is None) == (positions is None)
    if positions is not None:
        assert torch.equal(top.positions, positions)
    # Duplicated images tie; the earlier copy must come first.
    for u in range(len(units)):
        seen = top.indices[u].tolist()
        for i in range(5):
            if i in seen and i + 12 in seen:
                assert seen.index(i) < seen.index(i + 12)


def test_crops_follow_receptive_field_boxes():
    model = CNN(depth=3, channels=4).eval()
    images = torch.randint(1, 256, (10, 1, 28, 28), dtype=torch.uint8)  # no zero pixels: padding is visible
    layer = "blocks.1"
    top = top_k_for_layer(model, layer, images, k=3)
    crops = crop_receptive_fields(images, top, model, layer)
    size = receptive_fields(model)[layer][0]
    assert crops.shape == (8, 3, 1, size, size) and crops.dtype == torch.uint8  # blocks.1 has 8 channels
    for u in range(8):
        for j in range(3):
            y, x = top.positions[u, j].tolist()
            t, left, b, r = receptive_field_box(model, layer, y, x)
            crop = crops[u, j, 0]
            assert int((crop != 0).sum()) == (b - t) * (r - left)  # exactly the clipped area is filled
            oy, ox = [int(v) for v in (crop != 0).nonzero()[0]]
            assert torch.equal(crop[oy:oy + b - t, ox:ox + r - left], images[top.indices[u, j], 0, t:b, left:r])
            # Padding sits on the clipped side: a box cut at the top starts lower in the crop.
            assert oy == t - (y * 4 - 3) and ox == left - (x * 4 - 3)
    padded = crop_receptive_fields(images, top, model, layer, pad_to=11)
    assert padded.shape[-2:] == (11, 11)
    with pytest.raises(ReplearnError, match="pad_to"):
        crop_receptive_fields(images, top, model, layer, pad_to=3)


def test_vector_layers_give_whole_images_and_bad_k_is_rejected():
    model = MLP(depth=1, width=4)
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    top = top_k_for_layer(model, "blocks.0", images, k=2)
    assert torch.equal(crop_receptive_fields(images, top, model, "blocks.0"), images[top.indices])
    with pytest.raises(ReplearnError, match="k=7"):
        top_k_for_layer(model, "blocks.0", images, k=7)
    with pytest.raises(ReplearnError, match="units"):
        top_k_for_layer(model, "blocks.0", images, k=2, units=[4])


@pytest.mark.parametrize("model", [CNN(depth=3, channels=4, max_channels=8), MLP(depth=3, width=16)],
                         ids=["cnn", "mlp"])
def test_one_pass_over_every_layer_equals_one_pass_per_layer(model):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (700, 1, 28, 28), dtype=torch.uint8)
    every = top_k_for_layers(model, model.layer_names(), images, k=5, batch_size=300)
    for layer in model.layer_names():
        alone = top_k_for_layer(model, layer, images, k=5, batch_size=300)
        assert torch.equal(every[layer].values, alone.values) and torch.equal(every[layer].indices, alone.indices)
        assert (alone.positions is None and every[layer].positions is None) or torch.equal(every[layer].positions,
                                                                                         alone.positions)
