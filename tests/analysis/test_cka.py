"""Linear CKA: identity, invariances, degenerate inputs, and the minibatch estimator."""

import math

import pytest
import torch

from replearn.analysis.cka import MinibatchCKA, cka_matrix, cross_model_cka, linear_cka, minibatch_cka
from replearn.errors import ReplearnError


def _features(n=500, d=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # Anisotropic features so the invariances are not trivially satisfied.
    return torch.randn(n, d, generator=gen) * torch.linspace(0.2, 3.0, d) + 5.0


def test_self_similarity_is_one():
    x = _features()
    assert abs(linear_cka(x, x) - 1.0) < 1e-6
    # Float32 input with a large offset still gives 1 (float64 accumulation).
    big = x.float() * 1e3 + 1e4
    assert abs(linear_cka(big, big) - 1.0) < 1e-6


def test_invariant_to_orthogonal_transform_and_isotropic_scale():
    x = _features(d=16)
    y = torch.tanh(x[:, :10] @ torch.randn(10, 12, generator=torch.Generator().manual_seed(1)) / 4)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(2)))
    base = linear_cka(x, y)
    assert 0.05 < base < 0.99
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-6)
    assert linear_cka(3.7 * x, y) == pytest.approx(base, abs=1e-6)
    assert linear_cka(x, 0.01 * y + 2.0) == pytest.approx(base, abs=1e-6)


def test_not_invariant_to_anisotropic_scaling():
    x = _features(d=16)
    y = x[:, :4]
    # Stretching the shared directions makes the representations more alike: CKA must move.
    stretched = x * torch.cat([torch.full((4,), 10.0), torch.ones(12)])
    assert linear_cka(stretched, y) > linear_cka(x, y) + 0.1


def test_independent_features_have_small_cka():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(5000, 10, generator=gen), torch.randn(5000, 10, generator=gen)
    # Expected value for independent Gaussians is about d/n-scale; far below related features.
    assert linear_cka(x, y) < 0.02


def test_constant_features_give_zero_not_nan():
    x = _features()
    const = torch.full((500, 7), 3.0)
    assert linear_cka(x, const) == 0.0
    assert linear_cka(const, const) == 0.0
    grid = cka_matrix({"a": x, "dead": const, "b": x[:, :5]})
    assert not torch.isnan(grid).any()
    assert grid[1].tolist() == [0.0, 0.0, 0.0]
    assert grid[0, 0] == 1.0 and grid[2, 2] == 1.0


def test_matrix_symmetric_unit_diagonal_and_matches_pairwise():
    feats = {f"l{i}": torch.relu(_features(d=8 + i, seed=i) - 5 + 0.3 * i) for i in range(4)}
    grid = cka_matrix(feats)
    assert torch.allclose(grid, grid.T)
    assert torch.allclose(grid.diagonal(), torch.ones(4, dtype=torch.float64))
    assert grid[1, 3].item() == pytest.approx(linear_cka(feats["l1"], feats["l3"]), abs=1e-12)
    assert ((grid >= 0) & (grid <= 1)).all()


def test_cross_model_grid_of_different_depths():
    x = _features(d=12)
    shallow = {"input": x, "h": torch.relu(x - 5)}
    deep = {"input": x, "h1": torch.relu(x - 5), "h2": torch.relu(x - 5)[:, :6]}
    grid = cross_model_cka(shallow, deep)
    assert grid.shape == (2, 3)
    assert grid[0, 0].item() == pytest.approx(1.0, abs=1e-9)
    assert grid[1, 1].item() == pytest.approx(1.0, abs=1e-9)


def test_minibatch_unbiased_cka_matches_full_on_large_n():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6000, 8, generator=gen)
    y = x[:, :4] @ torch.randn(4, 6, generator=gen) + 0.8 * torch.randn(6000, 6, generator=gen)
    full = linear_cka(x, y)
    assert 0.1 < full < 0.9
    assert minibatch_cka(x, y, batch_size=500) == pytest.approx(full, abs=0.02)


def test_minibatch_accumulator_grid():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 6, generator=gen)
    acc = MinibatchCKA()
    for start in range(0, 2000, 400):
        b = x[start:start + 400]
        acc.update({"x": b, "x2": 2 * b @ torch.linalg.qr(torch.randn(6, 6, generator=gen))[0], "c": torch.ones(400, 3)})
    grid = acc.compute()
    assert grid.shape == (3, 3)
    assert grid[0, 1].item() == pytest.approx(1.0, abs=1e-6)
    assert grid[2].tolist() == [0.0, 0.0, 0.0]
    assert not any(math.isnan(v) for v in grid.flatten().tolist())


def test_bad_inputs_raise():
    with pytest.raises(ReplearnError):
        linear_cka(torch.zeros(10, 3), torch.zeros(9, 3))
    with pytest.raises(ReplearnError):
        cka_matrix({"a": torch.zeros(10, 3), "b": torch.zeros(8, 3)})
    with pytest.raises(ReplearnError):
        minibatch_cka(torch.zeros(10, 3), torch.zeros(10, 3), batch_size=2)


def test_float32_products_agree_with_float64():
    gen = torch.Generator().manual_seed(6)
    base = torch.randn(3000, 40, generator=gen)
    feats = {"a": base * 3 + 100, "b": torch.relu(base @ torch.randn(40, 64, generator=gen)), "c": base[:, :5] ** 2}
    exact = cka_matrix(feats)
    fast = cka_matrix(feats, dtype=torch.float32)
    assert (fast - exact).abs().max() < 1e-5
