"""The ridge probe's one-strength fit against scikit-learn's RidgeClassifier, prediction by prediction."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier

from replearn.analysis.probes import RIDGE_GRID, ridge_probe


def _noisy_features(n, d=40, k=6, offset=0.0, seed=0):
    """ReLU features whose class is a noisy linear function of them: far from separable."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, d, generator=gen))
    logits = x @ torch.randn(d, k, generator=gen) + 3.0 * torch.randn(n, k, generator=gen)
    return x + offset, logits.argmax(1)


def _sklearn_predictions(x_train, y_train, x_eval, lam):
    xtr, xev = x_train.double().numpy(), x_eval.double().numpy()
    mean, std = xtr.mean(0), xtr.std(0)
    std = np.where(std > 0, std, 1.0)
    model = RidgeClassifier(alpha=lam * len(xtr)).fit((xtr - mean) / std, y_train.numpy())
    return torch.from_numpy(model.predict((xev - mean) / std))


@pytest.mark.parametrize("offset", [0.0, 1e3])  # 1e3: centring the raw Gram would cancel; the probe centres rows
@pytest.mark.parametrize("lam", [RIDGE_GRID[0], 1e-2, RIDGE_GRID[-1]])
def test_one_lambda_fit_predicts_like_sklearn(lam, offset):
    x, y = _noisy_features(4000, offset=offset, seed=int(lam * 1e4) % 7)
    x[:, 3] = 0.0  # a dead unit
    x[:, 5] = 2.5  # a constant one
    agree_labels = _sklearn_predictions(x[:3000], y[:3000], x[3000:], lam)
    assert 0.3 < float((agree_labels == y[3000:]).double().mean()) < 0.9  # not trivially separable
    # Scored against scikit-learn's predictions, the probe's eval accuracy is its agreement with them.
    res = ridge_probe(x[:3000], y[:3000], x[3000:], agree_labels, num_classes=6, lam=lam)
    assert res["lambda"] == lam
    assert res["eval_acc"] >= 0.998


def test_search_picks_a_grid_strength_and_fixed_lambda_reproduces_it():
    x, y = _noisy_features(3000, seed=5)
    searched = ridge_probe(x[:2000], y[:2000], x[2000:], y[2000:])
    assert searched["lambda"] in RIDGE_GRID
    fixed = ridge_probe(x[:2000], y[:2000], x[2000:], y[2000:], lam=searched["lambda"])
    assert fixed == searched
