"""Gradient maps kept on the ink pixels give exactly what the dense maps give: peaks, threshold samples, on pixels."""

from __future__ import annotations

import torch

from replearn.dissection.maps import grad_x_input_maps
from replearn.dissection.registration import Geometry, sampled
from replearn.dissection.scoring import on_pixels
from replearn.models import build_model

SIZE = (28, 28)


def test_ink_maps_match_the_dense_maps():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model("mlp", depth=3, width=16).eval()
    images = (torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8, generator=gen)
              * (torch.rand(7, 1, 28, 28, generator=gen) > 0.7))
    images[0] = 0  # no ink: every value is 0
    images[1] = 200  # ink everywhere: no zeros off the ink

    def normalize(x):
        return (x.float() / 255 - 0.13) / 0.31

    layers, full = ["blocks.0", "blocks.2", "head"], Geometry.full(SIZE)
    for kept in (None, torch.rand(28, 28, generator=gen) > 0.5):
        dense = grad_x_input_maps(model, layers, images, normalize, 0.31, kept)
        ink = grad_x_input_maps(model, layers, images, normalize, 0.31, kept, sparse=True)
        for layer in layers:
            maps = dense[layer]  # (B, U, 28, 28)
            assert torch.equal(ink[layer].dense(), maps) and torch.equal(ink[layer][2:5].dense(), maps[2:5])
            assert torch.equal(ink[layer].peaks(), maps.flatten(2).amax(2))
            assert torch.equal(sampled(ink[layer], full, SIZE), sampled(maps, full, SIZE))
            limits = torch.quantile(maps.transpose(0, 1).flatten(1), 0.9, dim=1)
            limits[0], limits[-1] = -1e-3, 0.0  # thresholds the off-ink zeros reach
            expected = set(zip(*[t.tolist() for t in on_pixels(maps, limits, full, SIZE)]))
            found = on_pixels(ink[layer], limits, full, SIZE)
            assert len(found[0]) == len(expected) and set(zip(*[t.tolist() for t in found])) == expected
