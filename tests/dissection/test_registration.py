"""Registered maps: cells upsampled at their receptive-field centres, pooled back over their windows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from replearn.dissection import Geometry, MapSource, PlantedSource
from replearn.dissection.registration import (
    pool,
    pooling_matrix,
    sample_grid,
    sampled,
    upsample,
    upsample_matrix,
)
from replearn.dissection.scoring import on_pixels
from replearn.errors import ReplearnError
from replearn.models import build_model

SIZE = (28, 28)


@pytest.mark.parametrize("cells,step", [(14, 2.0), (7, 4.0), (4, 8.0)])
def test_each_cell_peaks_at_its_centre_and_the_edges_are_flat(cells, step):
    matrix = upsample_matrix(cells, 28, 0.0, step)  # (28, cells)
    assert matrix.shape == (28, cells)
    torch.testing.assert_close(matrix.sum(1), torch.ones(28))
    for i in range(cells):
        centre = int(i * step)
        if centre < 28:  # a cell's own centre takes its value alone
            assert matrix[centre, i] == 1.0
    assert matrix.argmax(0).tolist() == [min(int(i * step), 27) for i in range(cells)]
    last = int((cells - 1) * step)
    assert (matrix[last:, -1] == 1).all()  # beyond the outermost centre: the outermost cell's value
    # halfway between two centres: the mean of the two cells
    assert matrix[int(step / 2), :2].tolist() == [0.5, 0.5]


def test_7x7_cells_sit_on_the_conv_grid_not_on_bilinear_tiles():
    """The review's case: 3x3/stride-2 convs put 7x7 cells at 0, 4, ..., 24 px; bilinear upsampling at 1.5, 5.5, ..."""
    registered = upsample_matrix(7, 28, 0.0, 4.0).argmax(0)
    bilinear = F.interpolate(torch.eye(7)[:, None], size=28, mode="linear", align_corners=False)[:, 0].argmax(1)
    assert registered.tolist() == [0, 4, 8, 12, 16, 20, 24]
    assert bilinear.tolist() != registered.tolist()
    evenly = Geometry.evenly((7, 7), SIZE)  # the even tiling reproduces bilinear align_corners=False exactly
    torch.testing.assert_close(upsample_matrix(7, 28, evenly.centre, evenly.step),
                               F.interpolate(torch.eye(7)[:, None], size=28, mode="linear", align_corners=False)[:, 0].T)


def test_full_resolution_is_the_identity_and_pooling_averages_the_stride_window():
    maps = torch.rand(3, 2, 28, 28)
    full = Geometry.full(SIZE)
    assert torch.equal(upsample(maps, full, SIZE), maps) and torch.equal(pool(maps, full), maps)
    rows = pooling_matrix(14, 28, 0.0, 2.0)  # cell i: pixel 2i whole, its two neighbours half (window 2 px wide)
    assert rows[3, 5:8].tolist() == [0.25, 0.5, 0.25] and rows[3].sum() == 1
    assert rows[0, :2].tolist() == pytest.approx([2 / 3, 1 / 3])  # the window's part outside the image is ignored
    coarse = Geometry((7, 7), 0.0, 4.0)
    native = pool(torch.ones(2, 28, 28), coarse)
    torch.testing.assert_close(native, torch.ones(2, 7, 7))
    with pytest.raises(ReplearnError, match="do not match their geometry"):
        upsample(torch.zeros(1, 1, 4, 4), coarse, SIZE)


def test_thresholds_sample_every_phase_of_the_cell_grid():
    """The sampled pixels fall on cell centres and between them alike (an even stride would only hit 14x14 centres)."""
    rows = sample_grid(SIZE).any(1).nonzero().flatten()
    for step in (2, 4, 8):
        phases = torch.bincount(rows % step, minlength=step)
        assert phases.min() >= 1 and phases.max() - phases.min() <= 1, (step, phases)
    maps = torch.rand(5, 3, 7, 7)
    geometry = Geometry((7, 7), 0.0, 4.0)
    values = sampled(maps, geometry, SIZE)  # (U, B * n)
    full = upsample(maps, geometry, SIZE)[..., sample_grid(SIZE)]  # (B, U, n)
    torch.testing.assert_close(values, full.transpose(0, 1).reshape(3, -1))


def test_map_sources_carry_each_layers_geometry():
    model = build_model("cnn", depth=3, channels=2, max_channels=4)
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    source = MapSource(model, ["blocks.0", "blocks.1", "blocks.2", "head"], images, None, 1.0)
    assert source.geometry == {"blocks.0": Geometry((14, 14), 0.0, 2.0), "blocks.1": Geometry((7, 7), 0.0, 4.0),
                               "blocks.2": Geometry((4, 4), 0.0, 8.0)}
    assert source.methods["head"] == "class" and source.scores["head"].shape == (4, 10)
    mlp = MapSource(build_model("mlp", depth=2, width=8), ["blocks.0"], images, None, 1.0)
    assert mlp.geometry == {"blocks.0": Geometry.full(SIZE)}
    planted = PlantedSource({"full": torch.zeros(4, 1, 28, 28), "tiles": torch.zeros(4, 1, 7, 7)}, images)
    assert planted.geometry == {"full": Geometry.full(SIZE), "tiles": Geometry((7, 7), 1.5, 4.0)}


GEOMETRIES = [Geometry((14, 14), 0.0, 2.0), Geometry((7, 7), 0.0, 4.0), Geometry((4, 4), 0.0, 8.0),
              Geometry.evenly((7, 7), SIZE), Geometry((1, 1), 13.5, 28.0), Geometry((2, 2), 6.5, 14.0),
              Geometry.full(SIZE)]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g.cells[0]}x{g.cells[1]}@{g.centre}+{g.step}")
def test_on_pixels_are_exactly_the_thresholded_upsampled_maps(geometry):
    """The tile search finds every pixel at or above the threshold and no other, including ties at it."""
    gen = torch.Generator().manual_seed(0)
    cases = [torch.relu(torch.randn(12, 5, *geometry.cells, generator=gen)),  # sparse ReLU maps
             (torch.rand(12, 5, *geometry.cells, generator=gen) > 0.6).float(),  # saturated: ties at the peak
             torch.randn(12, 5, *geometry.cells, generator=gen)]  # negative values and thresholds
    for maps in cases:
        up = upsample(maps, geometry, SIZE)  # (B, U, 28, 28)
        limits = up.transpose(0, 1).flatten(1).quantile(0.95, dim=1)
        limits[0] = up[:, 0].max()  # only the peak pixels
        limits[1] = float("inf")  # a constant unit is never on
        b, u, y, x = (up >= limits[None, :, None, None]).nonzero(as_tuple=True)
        units, images, pixels = on_pixels(maps, limits, geometry, SIZE)
        expected = set(zip(u.tolist(), b.tolist(), (y * 28 + x).tolist()))
        assert len(units) == len(expected) and set(zip(units.tolist(), images.tolist(), pixels.tolist())) == expected


def test_interpolation_is_the_upsampling_matrix_product():
    maps = torch.rand(3, 4, 7, 7)
    geometry = Geometry((7, 7), 0.0, 4.0)
    rows = upsample_matrix(7, 28, 0.0, 4.0)
    torch.testing.assert_close(upsample(maps, geometry, SIZE), rows @ maps @ rows.T)
