"""The ridge probe against scikit-learn's RidgeClassifier on the same features, in one process.

Features: 256 ReLU units of a fixed random projection of the training images (55k x 256 on MNIST,
the size of one probed layer). replearn's probe includes its search over six ridge strengths;
scikit-learn's fit gets the strength that search picked, so it does strictly less work.
"""

from __future__ import annotations

import statistics
import time

import torch
from sklearn.linear_model import RidgeClassifier

from replearn.analysis.probes import ridge_probe


def random_features(images: torch.Tensor, normalize, width: int = 256, seed: int = 0) -> torch.Tensor:
    """(N, width) ReLU features of uint8 ``images`` through a fixed Gaussian projection."""
    pixels = normalize(images).flatten(1)  # (N, P)
    weight = torch.randn(pixels.shape[1], width, generator=torch.Generator().manual_seed(seed))
    return torch.relu(pixels @ weight / pixels.shape[1] ** 0.5)


def _median_seconds(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def compare(splits, width: int = 256, repeats: int = 3) -> dict:
    """Seconds and test accuracy of both probes on the same features of ``splits``."""
    train = random_features(splits.train_x, splits.normalize, width)
    test = random_features(splits.test_x, splits.normalize, width)
    ours_s, ours = _median_seconds(lambda: ridge_probe(train, splits.train_y, test, splits.test_y), repeats)
    alpha = ours["lambda"] * len(train)  # the probe's lambda is relative to n
    x_train, y_train, x_test, y_test = train.numpy(), splits.train_y.numpy(), test.numpy(), splits.test_y.numpy()

    def fit_sklearn() -> float:
        # Standardized like the probe, so that alpha means the same thing to both.
        mean, std = x_train.mean(0), x_train.std(0) + 1e-12
        model = RidgeClassifier(alpha=alpha).fit((x_train - mean) / std, y_train)
        return float(model.score((x_test - mean) / std, y_test))

    sk_s, sk_acc = _median_seconds(fit_sklearn, repeats)
    return {
        "ridge_features": f"{len(train)} x {width}",
        "ridge_replearn_seconds_incl_6_lambda_search": ours_s,
        "ridge_sklearn_seconds_one_lambda": sk_s,
        "ridge_sklearn_over_replearn": sk_s / ours_s,
        "ridge_test_acc_replearn": ours["eval_acc"],
        "ridge_test_acc_sklearn": sk_acc,
    }
