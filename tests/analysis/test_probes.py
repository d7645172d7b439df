"""Linear probes: far above chance on learnable data, at chance on shuffled labels."""

import math

import pytest
import torch

from replearn.analysis.probes import logistic_probe, probe_layers, ridge_probe
from replearn.errors import ReplearnError


def _learnable(n, k=5, d=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = 1.5 * torch.randn(k, d, generator=gen)
    y = torch.randint(0, k, (n,), generator=gen)
    return centers[y] + torch.randn(n, d, generator=gen), y


def _chance_band(n_eval, k):
    # Chance accuracy 1/k plus four binomial standard deviations.
    p = 1.0 / k
    return 4 * math.sqrt(p * (1 - p) / n_eval)


def test_ridge_probe_beats_chance_on_learnable_data():
    x, y = _learnable(3000)
    res = ridge_probe(x[:2000], y[:2000], x[2000:], y[2000:])
    assert res["eval_acc"] > 0.2 + 0.5  # chance is 0.2
    assert res["train_acc"] >= res["eval_acc"] - 0.05


def test_ridge_probe_sits_at_chance_on_shuffled_labels():
    x, y = _learnable(3000, seed=1)
    shuffled = y[torch.randperm(3000, generator=torch.Generator().manual_seed(9))]
    res = ridge_probe(x[:2000], shuffled[:2000], x[2000:], shuffled[2000:])
    assert abs(res["eval_acc"] - 0.2) < _chance_band(1000, 5)


def test_ridge_dual_form_when_wider_than_rows():
    x, y = _learnable(400, d=600, seed=2)
    res = ridge_probe(x[:200], y[:200], x[200:], y[200:])
    assert res["eval_acc"] > 0.7


def test_logistic_probe_beats_chance():
    x, y = _learnable(1500, seed=3)
    assert logistic_probe(x[:1000], y[:1000], x[1000:], y[1000:])["eval_acc"] > 0.7


def test_probe_layers_handles_constant_and_nonfinite_layers():
    x, y = _learnable(600, seed=4)
    train = {"good": x[:400], "const": torch.ones(400, 4), "nan": torch.full((400, 3), float("nan"))}
    evals = {"good": x[400:], "const": torch.ones(200, 4), "nan": torch.full((200, 3), float("nan"))}
    res = probe_layers(train, y[:400], evals, y[400:])
    assert res["good"]["eval_acc"] > 0.7
    assert abs(res["const"]["eval_acc"] - 0.2) < 0.15  # predicts one class: about 1/k
    assert math.isnan(res["nan"]["eval_acc"])
    with pytest.raises(ReplearnError):
        probe_layers(train, y[:400], evals, y[400:], method="svm")


def test_ridge_probe_predicts_like_sklearns_ridge_classifier_at_its_lambda(synthetic):
    """Oracle: scikit-learn's RidgeClassifier with the same strength on the same standardized features."""
    from replearn.bench.ridge import compare

    # 16 random features leave the synthetic classes far from separable (about 50% test accuracy),
    # so agreement is not the trivial agreement of two perfect classifiers.
    figures = compare(synthetic(num_train=1500, num_test=500, val_size=500, seed=3), width=16, repeats=1)
    assert 0.2 < figures["ridge_test_acc_sklearn"] < 0.9
    assert figures["ridge_test_acc_replearn"] == pytest.approx(figures["ridge_test_acc_sklearn"], abs=0.004)
