"""Receptive fields against a gradient oracle: the pixels a unit's gradient touches."""

import pytest
import torch

from replearn.models import CNN, MLP
from replearn.recording.hooks import forward_until
from replearn.recording.receptive_field import receptive_field_box, receptive_fields, unit_centres


def _gradient_boxes(model, layer, channel=0):
    """{(y, x): bounding box (top, left, bottom, right) of nonzero d out[c, y, x] / d input}."""
    with torch.no_grad():
        _, _, h, w = forward_until(model, layer, torch.zeros(1, 1, 28, 28, dtype=torch.float64)).shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    # One input per unit; samples never interact (no BatchNorm), so one backward gives every unit's gradient.
    x = torch.randn(len(ys), 1, 28, 28, dtype=torch.float64, requires_grad=True)
    out = forward_until(model, layer, x)
    (grad,) = torch.autograd.grad(out[torch.arange(len(ys)), channel, ys, xs].sum(), x)
    boxes = {}
    for p, (y, x_) in enumerate(zip(ys.tolist(), xs.tolist())):
        rows = grad[p, 0].ne(0).any(1).nonzero().flatten()
        cols = grad[p, 0].ne(0).any(0).nonzero().flatten()
        boxes[(y, x_)] = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return boxes


@pytest.mark.parametrize("depth,residual", [(3, False), (5, True)])
def test_box_matches_gradient_support(depth, residual):
    # tanh has no flat regions, so every pixel in the field gets a nonzero gradient.
    model = CNN(depth=depth, channels=2, max_channels=4, norm="none", activation="tanh", residual=residual)
    model = model.double().eval()
    fields = receptive_fields(model)
    exact_checked = 0
    for layer in model.hidden_layers():
        size = fields[layer][0]
        for (y, x), grad_box in _gradient_boxes(model, layer).items():
            top, left, bottom, right = receptive_field_box(model, layer, y, x)
            assert top <= grad_box[0] and left <= grad_box[1] and grad_box[2] <= bottom and grad_box[3] <= right
            if bottom - top == size and right - left == size:  # not clipped: the support fills the box
                assert grad_box == (top, left, bottom, right), (layer, y, x)
                exact_checked += 1
    assert exact_checked > 0


def test_hand_derived_fields_and_clipping():
    model = CNN(depth=3, channels=2)
    # Three stride-2 3x3 convs (28 -> 14 -> 7 -> 4): 3 px, jump 2, pad 1; then 3 + 2*2 = 7, jump 4,
    # pad 1 + 1*2 = 3; then 7 + 2*4 = 15, jump 8, pad 3 + 1*4 = 7.
    assert receptive_fields(model) == {"blocks.0": (3, 2, 1), "blocks.1": (7, 4, 3), "blocks.2": (15, 8, 7), "head": (28, 1, 0)}
    assert receptive_field_box(model, "blocks.2", 0, 0) == (0, 0, 8, 8)
    assert receptive_field_box(model, "blocks.2", 3, 3) == (17, 17, 28, 28)
    assert receptive_field_box(model, "head", 0, 0) == (0, 0, 28, 28)


def test_mlp_units_see_the_whole_image():
    model = MLP(depth=2, width=4)
    assert set(receptive_fields(model).values()) == {(28, 1, 0)}
    assert receptive_field_box(model, "blocks.1", 3, 5) == (0, 0, 28, 28)


@pytest.mark.parametrize("depth,residual", [(3, False), (8, True)])
def test_unit_centres_are_the_midpoints_of_the_gradient_support(depth, residual):
    """centre + y * stride is where unit y's input gradient is centred (unclipped units), from the conv arithmetic."""
    model = CNN(depth=depth, channels=2, max_channels=4, norm="none", activation="tanh", residual=residual)
    model = model.double().eval()
    centres = unit_centres(model)
    assert centres["head"] is None
    checked = 0
    for layer in model.hidden_layers():
        centre, stride = centres[layer]
        size = receptive_fields(model)[layer][0]
        for (y, x), (top, left, bottom, right) in _gradient_boxes(model, layer).items():
            if bottom - top == size and right - left == size:  # unclipped: the support is the whole field
                assert (top + bottom - 1) / 2 == centre + y * stride and (left + right - 1) / 2 == centre + x * stride
                checked += 1
    assert checked > 0
    if depth == 3:  # 3x3 convs with padding 1 centre unit 0 on pixel 0: 14x14 cells 2 px apart, 7x7 4 px, 4x4 8 px
        assert [centres[f"blocks.{i}"] for i in range(3)] == [(0.0, 2), (0.0, 4), (0.0, 8)]
