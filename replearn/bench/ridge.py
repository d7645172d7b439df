"""The ridge probe against scikit-learn's RidgeClassifier on the same features, in one process.

Features: 256 ReLU units of a fixed random projection of the training images (55k x 256 on MNIST,
the size of one probed layer). replearn is timed twice: with its search over six ridge strengths
(the default) and for one fit at the strength that search picked; scikit-learn's fit gets that same
strength. Each is timed at 1 and 2 threads (torch's, and numpy's BLAS through threadpoolctl), and
the load average is read before and after: other jobs on the machine slow every figure.
"""

from __future__ import annotations

import statistics
import time

import torch
from sklearn.linear_model import RidgeClassifier
from threadpoolctl import threadpool_limits

from replearn.analysis.probes import ridge_probe
from replearn.bench.machine import load_average


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


def compare(splits, width: int = 256, repeats: int = 5, thread_counts: tuple[int, ...] = (1, 2)) -> dict:
    """Seconds (medians of ``repeats``) and test accuracy of both probes on the same features of ``splits``."""
    train = random_features(splits.train_x, splits.normalize, width)
    test = random_features(splits.test_x, splits.normalize, width)
    x_train, y_train, x_test, y_test = train.numpy(), splits.train_y.numpy(), test.numpy(), splits.test_y.numpy()
    figures: dict = {"ridge_features": f"{len(train)} x {width}", "ridge_load_before": load_average()}
    previous = torch.get_num_threads()
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            with threadpool_limits(threads):  # scikit-learn's products run in numpy's BLAS
                search_s, ours = _median_seconds(lambda: ridge_probe(train, splits.train_y, test, splits.test_y), repeats)
                lam = ours["lambda"]
                one_s, one = _median_seconds(
                    lambda: ridge_probe(train, splits.train_y, test, splits.test_y, lam=lam), repeats)  # noqa: B023
                alpha = lam * len(train)  # the probe's lambda is relative to n

                def fit_sklearn() -> float:
                    # Standardized like the probe, so that alpha means the same thing to both.
                    mean, std = x_train.mean(0), x_train.std(0) + 1e-12
                    model = RidgeClassifier(alpha=alpha).fit((x_train - mean) / std, y_train)  # noqa: B023
                    return float(model.score((x_test - mean) / std, y_test))

                sk_s, sk_acc = _median_seconds(fit_sklearn, repeats)
            t = f"{threads}t"
            figures.update({
                f"ridge_{t}_replearn_seconds_incl_6_lambda_search": search_s,
                f"ridge_{t}_replearn_seconds_one_lambda": one_s,
                f"ridge_{t}_sklearn_seconds_one_lambda": sk_s,
                # The target: <= 1 for one fit (replearn at least as fast as scikit-learn).
                f"ridge_{t}_replearn_over_sklearn_one_lambda": one_s / sk_s,
                f"ridge_{t}_replearn_search_over_sklearn_one_lambda": search_s / sk_s,
            })
    finally:
        torch.set_num_threads(previous)
    figures.update({
        "ridge_load_after": load_average(),
        "ridge_lambda": ours["lambda"],
        "ridge_test_acc_replearn": ours["eval_acc"],
        "ridge_test_acc_replearn_one_lambda": one["eval_acc"],
        "ridge_test_acc_sklearn": sk_acc,
    })
    return figures
