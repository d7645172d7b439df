"""Concept patterns: each pixel's set of concepts numbered once, so intersections are counts."""

from __future__ import annotations

import pytest
import torch

from replearn.dissection.patterns import concept_patterns
from replearn.dissection.registration import Geometry, upsample
from replearn.dissection.scoring import accumulate, intersections


@pytest.mark.parametrize("concepts", [3, 27, 70])  # one byte, the 64-bit fast path's limit, and past it
def test_patterns_give_back_every_mask_and_area(concepts):
    gen = torch.Generator().manual_seed(concepts)
    masks = torch.rand(40, concepts, 6, 6, generator=gen) > 0.8  # (N, K, H, W)
    patterns = concept_patterns(masks)
    rebuilt = patterns.bits[patterns.ids.long()]  # (N, P, K)
    assert torch.equal(rebuilt.permute(0, 2, 1).reshape(masks.shape), masks)
    assert patterns.count == len(torch.unique(masks.flatten(2).transpose(1, 2).reshape(-1, concepts), dim=0))
    torch.testing.assert_close(patterns.concept_area(25), masks[:25].sum((0, 2, 3)).double())
    assert concept_patterns(masks) is patterns  # remembered for the same mask tensor


def test_pattern_counts_give_the_intersections_of_a_direct_count():
    gen = torch.Generator().manual_seed(1)
    masks = torch.rand(30, 9, 28, 28, generator=gen) > 0.7
    maps = torch.rand(30, 4, 7, 7, generator=gen)  # (B, U, h, w)
    geometry, limits = Geometry((7, 7), 0.0, 4.0), torch.tensor([0.9, 0.5, 0.99, 2.0])
    patterns = concept_patterns(masks)
    counts = torch.zeros(4, patterns.count, dtype=torch.int64)
    area = torch.zeros(4, dtype=torch.float64)
    accumulate(maps, limits, patterns.ids, patterns.count, geometry, (28, 28), counts, area)
    on = upsample(maps, geometry, (28, 28)) >= limits[None, :, None, None]  # (B, U, 28, 28)
    direct = torch.einsum("bupq,bkpq->uk", on.double(), masks.double())
    torch.testing.assert_close(intersections(counts, patterns.bits), direct)
    torch.testing.assert_close(area, on.sum((0, 2, 3)).double())
    assert area[3] == 0  # a threshold above every value: never on
