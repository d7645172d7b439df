"""Linear probes: how linearly decodable the class is from each layer.

The default probe is a closed-form ridge classifier on one-hot targets
(about 0.1 s for 60k x 256 features): features are standardized with
training statistics, the ridge strength is picked on a held-out slice of
the training set from a small grid (one Gram matrix serves the whole
grid), then the probe is refitted on all training rows and scored on the
evaluation set. ``method="logistic"`` uses scikit-learn's LBFGS logistic
regression instead (~10x slower, calibrated probabilities, similar accuracy).
"""

from __future__ import annotations

import warnings

import torch

from replearn.errors import ReplearnError

#: Ridge strengths relative to the number of training rows (features are standardized).
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
METHODS = ("ridge", "logistic")


def _standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Standardize with training statistics (float32: the products after it are float32 too)."""
    train = train.flatten(1).float()
    # float32 reductions are cascaded in torch: ~1e-7 relative error, plenty for a probe.
    mean = train.mean(0, keepdim=True)
    std = (train - mean).square().mean(0, keepdim=True).sqrt()
    # Constant features would divide by zero; they stay at 0 after centring.
    std = torch.where(std > 1e-6 * (mean.abs() + 1e-30), std, torch.ones_like(std))
    scale = 1.0 / std
    return [(t.flatten(1).float() - mean) * scale for t in (train, *others)]


def _finite(x: torch.Tensor) -> bool:
    # A sum is NaN/inf whenever an entry is (one reduction instead of an elementwise mask).
    return bool(torch.isfinite(x.sum()))


class _RidgeSolver:
    """Ridge solutions for several strengths from one (centred) Gram matrix.

    Primal (d <= n): solves (X^T X + lam I) W = X^T T, a (d, d) system, from
    raw moments so that the fit/validation Grams add up to the full one.
    Dual (d > n): W = X^T (X X^T + lam I)^-1 T, an (n, n) system.
    Cholesky per strength: on CPU it is far cheaper than one eigendecomposition.
    Products run in float32 (features are standardized), solves in float64.
    """

    def __init__(self, x: torch.Tensor, targets: torch.Tensor, moments: tuple | None = None):
        n, d = x.shape
        self.primal = d <= n
        if self.primal:
            xx, xt, xs, ts, n = moments if moments is not None else _moments(x, targets)
            self.x_mean, self.t_mean = (xs / n)[None], (ts / n)[None]  # (1, d), (1, k)
            self.gram = xx - n * self.x_mean.T @ self.x_mean  # (d, d)
            self.rhs = xt - n * self.x_mean.T @ self.t_mean  # (d, k)
        else:
            x64, t64 = x.double(), targets.double()
            self.x_mean, self.t_mean = x64.mean(0, keepdim=True), t64.mean(0, keepdim=True)
            self.x = x64 - self.x_mean
            self.gram = self.x @ self.x.T  # (n, n)
            self.rhs = t64 - self.t_mean  # (n, k)
        self.eye = torch.eye(self.gram.shape[0], dtype=torch.float64)

    def weights(self, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights (d, k) and bias (1, k) for ridge strength ``lam`` (absolute)."""
        # A tiny jitter keeps the factorization valid for rank-deficient X at small lam.
        jitter = 1e-10 * float(self.gram.diagonal().mean().clamp(min=1.0))
        system = self.gram + (lam + jitter) * self.eye
        chol, info = torch.linalg.cholesky_ex(system)
        sol = torch.cholesky_solve(self.rhs, chol) if int(info) == 0 else torch.linalg.lstsq(system, self.rhs).solution
        w = sol if self.primal else self.x.T @ sol
        return w, self.t_mean - self.x_mean @ w


def _moments(x: torch.Tensor, t: torch.Tensor) -> tuple:
    """Raw sums (X^T X, X^T T, sum X, sum T, n) of float32 rows, returned in float64."""
    # (T^T X)^T, not X^T T: with few target columns the transposed skinny product is ~10x slower.
    return ((x.T @ x).double(), (t.T @ x).T.double(), x.double().sum(0), t.double().sum(0), x.shape[0])


def _accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return float(((x @ w.float() + b.float()).argmax(1) == y).double().mean()) if len(y) else float("nan")


def ridge_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    num_classes: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, float]:
    """Closed-form ridge classifier; returns train_acc, eval_acc and the chosen ``lambda`` (relative to n)."""
    _check_inputs(train_x, train_y, eval_x, eval_y)
    k = num_classes or int(max(train_y.max(), eval_y.max())) + 1
    xtr, xev = _standardize(train_x, eval_x)
    n, d = xtr.shape
    onehot = torch.nn.functional.one_hot(train_y.long(), k).float()  # (n, k)
    n_val = int(round(n * val_fraction))
    best, full_moments = RIDGE_GRID[len(RIDGE_GRID) // 2], None
    if n_val >= 1 and n - n_val >= 2:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        fit, val = order[n_val:], order[:n_val]
        # Each slice gathered once (55k x 256 rows: the gathers cost as much as the products).
        x_fit, t_fit, x_val, y_val = xtr[fit], onehot[fit], xtr[val], train_y[val]
        fit_moments = _moments(x_fit, t_fit) if d <= len(fit) else None
        solver = _RidgeSolver(x_fit, t_fit, fit_moments)
        scores = [_accuracy(x_val, y_val, *solver.weights(a * len(fit))) for a in RIDGE_GRID]
        # Ties go to the strongest regularization (first max of the reversed grid).
        best = RIDGE_GRID[len(RIDGE_GRID) - 1 - scores[::-1].index(max(scores))]
        if fit_moments is not None:
            # The full-data moments are the fit part plus the validation part: no second pass over fit rows.
            val_moments = _moments(x_val, onehot[val])
            full_moments = tuple(a + b for a, b in zip(fit_moments, val_moments))
    w, b = _RidgeSolver(xtr, onehot, full_moments).weights(best * n)
    return {"train_acc": _accuracy(xtr, train_y, w, b), "eval_acc": _accuracy(xev, eval_y, w, b), "lambda": best}


def _block_accuracy(x: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Accuracy per block of ``k`` target columns: ``labels`` (S, n) against argmax of each block; (S,)."""
    scores = (x @ w.float() + b.float()).view(x.shape[0], -1, k)  # (n, S, k)
    return (labels == scores.argmax(2).T).double().mean(1)


def shuffled_ridge_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    shuffles: int = 5,
    num_classes: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """The chance floor of :func:`ridge_probe`: fitted on shuffled training labels, scored on shuffled test labels.

    Each of ``shuffles`` permutations gets its own ridge strength (picked on a
    held-out slice, as for the real probe); all of them share one Gram matrix.
    Returns ``eval_acc`` (mean over shuffles), ``eval_acc_sd`` and the per-shuffle ``accs``.
    """
    _check_inputs(train_x, train_y, eval_x, eval_y)
    if shuffles < 1:
        raise ReplearnError(f"shuffles={shuffles} is invalid; use at least 1 label shuffle")
    k = num_classes or int(max(train_y.max(), eval_y.max())) + 1
    xtr, xev = _standardize(train_x, eval_x)
    n = xtr.shape[0]
    gen = torch.Generator().manual_seed(seed + 7919)
    ytr = torch.stack([train_y[torch.randperm(n, generator=gen)] for _ in range(shuffles)]).long()  # (S, n)
    yev = torch.stack([eval_y[torch.randperm(len(eval_y), generator=gen)] for _ in range(shuffles)]).long()
    targets = torch.nn.functional.one_hot(ytr.T, k).float().reshape(n, shuffles * k)  # (n, S*k)
    best = torch.full((shuffles,), RIDGE_GRID[len(RIDGE_GRID) // 2])
    n_val = int(round(n * val_fraction))
    if n_val >= 1 and n - n_val >= 2:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        fit, val = order[n_val:], order[:n_val]
        solver = _RidgeSolver(xtr[fit], targets[fit])
        x_val, y_val = xtr[val], ytr[:, val]  # gathered once, not once per strength
        scores = torch.stack([_block_accuracy(x_val, y_val, *solver.weights(a * len(fit)), k)
                              for a in RIDGE_GRID])  # (G, S)
        # Ties go to the strongest regularization, as in ridge_probe.
        best = torch.tensor(RIDGE_GRID)[len(RIDGE_GRID) - 1 - scores.flip(0).argmax(0)]
    solver = _RidgeSolver(xtr, targets)
    accs = torch.empty(shuffles, dtype=torch.float64)
    for lam in best.unique():
        cols = (best == lam).nonzero().flatten()
        w, b = solver.weights(float(lam) * n)
        accs[cols] = _block_accuracy(xev, yev, w, b, k)[cols]
    return {"eval_acc": float(accs.mean()), "eval_acc_sd": float(accs.std()) if shuffles > 1 else float("nan"),
            "accs": accs.tolist()}


def logistic_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    max_iter: int = 200,
    c: float = 1.0,
) -> dict[str, float]:
    """Multinomial logistic regression (scikit-learn, LBFGS) on standardized features."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: scikit-learn costs ~0.6 s; only this probe uses it
    from sklearn.linear_model import LogisticRegression  # lazy: as above

    _check_inputs(train_x, train_y, eval_x, eval_y)
    xtr, xev = (t.numpy() for t in _standardize(train_x, eval_x))
    clf = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings():
        # A capped iteration count is the point (a probe, not a tuned model).
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, train_y.numpy())
    return {
        "train_acc": float(clf.score(xtr, train_y.numpy())),
        "eval_acc": float(clf.score(xev, eval_y.numpy())) if len(eval_y) else float("nan"),
        "lambda": 1.0 / c,
    }


def _check_inputs(train_x, train_y, eval_x, eval_y) -> None:
    if train_x.shape[0] != train_y.shape[0] or eval_x.shape[0] != eval_y.shape[0]:
        raise ReplearnError(
            f"probe features and labels disagree: {train_x.shape[0]} vs {train_y.shape[0]} train rows, "
            f"{eval_x.shape[0]} vs {eval_y.shape[0]} eval rows"
        )
    if train_x.shape[0] < 2:
        raise ReplearnError("a probe needs at least 2 training examples; raise analysis.n_train")
    if not (_finite(train_x) and _finite(eval_x)):
        raise ReplearnError("probe features contain NaN/inf (diverged model?); analyse a finite checkpoint")


def probe_layers(
    train_feats: dict[str, torch.Tensor],
    train_y: torch.Tensor,
    eval_feats: dict[str, torch.Tensor],
    eval_y: torch.Tensor,
    method: str = "ridge",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Fit one probe per layer (same keys in both dicts); returns {layer: {train_acc, eval_acc, lambda}}."""
    if method not in METHODS:
        raise ReplearnError(f"probe method {method!r} is invalid: choose one of {', '.join(METHODS)}")
    if set(train_feats) != set(eval_feats):
        raise ReplearnError("probe_layers needs the same layers for train and eval features")
    out = {}
    for name, tr in train_feats.items():
        if not (_finite(tr) and _finite(eval_feats[name])):
            # A diverged layer has no meaningful probe; keep the other layers.
            out[name] = {"train_acc": float("nan"), "eval_acc": float("nan"), "lambda": float("nan")}
        elif method == "ridge":
            out[name] = ridge_probe(tr, train_y, eval_feats[name], eval_y, seed=seed)
        else:
            out[name] = logistic_probe(tr, train_y, eval_feats[name], eval_y)
    return out
