"""Linear probes: how linearly decodable the class is from each layer.

The default probe is a closed-form ridge classifier on one-hot targets
(about 0.1 s for 55k x 256 features on 1 thread, search included): features
are standardized with training statistics, the ridge strength is picked on a
held-out slice of the training set from a small grid, then the probe is
refitted on all training rows and scored on the evaluation set. The
standardization is folded into the (d, d) Gram matrix (one float32 product
over the raw rows, centred and scaled in float64), and the held-out slice's
Gram is subtracted from the full one, so the rows are never copied unless a
feature's mean dwarfs its spread. ``method="logistic"`` uses scikit-learn's LBFGS logistic
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


def _class_moments(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple:
    """Raw moments of float32 rows with labels: (X^T X, per-class row sums (k, d), class counts (k,)), float64.

    One GEMM over the rows; the per-class sums are X^T T for one-hot T and add up to sum X.
    """
    # (T^T X), not X^T T: with few target columns the transposed skinny product is ~10x slower.
    sums = torch.nn.functional.one_hot(y, k).float().T @ x
    return _gram(x).double(), sums.double(), torch.bincount(y, minlength=k).double()


def _gram(x: torch.Tensor) -> torch.Tensor:
    """X^T X from the products of column blocks on and above the diagonal (torch has no SYRK).

    4 blocks do 62% of a full GEMM's work: the fastest on 1 thread (52 against 71 ms for 55k x 256).
    With more threads, more (smaller) products scale worse on a loaded machine: 2 blocks, 75%.
    """
    d = x.shape[1]
    step = max(32, -(-d // (4 if torch.get_num_threads() == 1 else 2)))
    if d <= step:
        return x.T @ x
    gram = torch.empty(d, d)
    for i in range(0, d, step):
        block = x[:, i:i + step].T @ x[:, i:]  # (step, d - i)
        gram[i:i + step, i:] = block
        gram[i + step:, i:i + step] = block[:, step:].T
    return gram


def _feature_scale(x: torch.Tensor, moments: tuple, shift: torch.Tensor | None = None) -> torch.Tensor | None:
    """1/std of each feature from the raw moments (0 for constant features), or None if the rows need centring.

    Centring the raw Gram loses digits where a feature's mean dominates its spread (mean^2 > 0.99 E[x^2]).
    Such features are checked exactly (one float64 pass over just those columns): constant ones get no
    weight (as after explicit centring); if any varies, the caller centres the rows (by ``shift``) and calls again.
    """
    xx, sums, counts = moments
    n, diag = counts.sum(), xx.diagonal()
    mean = sums.sum(0) / n
    var = (diag / n - mean.square()).clamp(min=0)
    offset = mean + (0 if shift is None else shift.double())  # the features' own mean
    constant = var.sqrt() <= 1e-6 * (offset.abs() + 1e-30)  # also every all-zero feature
    risky = ((mean.square() > 0.99 * diag / n) & (diag > 0)).nonzero().flatten()
    if shift is None and len(risky) > max(1, x.shape[1] // 8):
        return None
    if len(risky):
        cols = x[:, risky].double()
        exact_const = cols.std(0, correction=0) <= 1e-6 * (offset[risky].abs() + 1e-30)
        if shift is None and not bool(exact_const.all()):
            return None
        constant[risky] = exact_const
    return torch.where(constant, torch.zeros_like(var), var.rsqrt())


def _gram_weights(moments: tuple, scale: torch.Tensor, lams: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge weights (L, d, k) and biases (L, k) on raw features, standardized by ``scale`` (d,), for each strength.

    Centring and scaling are folded into the (d, d) Gram in float64: the features are never copied.
    """
    xx, sums, counts = moments
    n = counts.sum()
    mean, t_mean = sums.sum(0) / n, counts / n
    gram = (xx - n * torch.outer(mean, mean)) * torch.outer(scale, scale)
    rhs = (sums.T - n * torch.outer(mean, t_mean)) * scale[:, None]  # (d, k)
    eye = torch.eye(len(scale), dtype=torch.float64)
    # A tiny jitter keeps the factorization valid for rank-deficient X at small lam.
    jitter = 1e-10 * float(gram.diagonal().mean().clamp(min=1.0))
    system = gram + (torch.tensor(lams, dtype=torch.float64)[:, None, None] + jitter) * eye  # (L, d, d)
    chol, info = torch.linalg.cholesky_ex(system)
    if bool((info == 0).all()):
        sol = torch.cholesky_solve(rhs.expand(len(lams), -1, -1), chol)
    else:
        sol = torch.linalg.lstsq(system, rhs.expand(len(lams), -1, -1)).solution
    w = sol * scale[:, None]
    return w, t_mean - mean @ w


def ridge_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    num_classes: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    lam: float | None = None,
) -> dict[str, float]:
    """Closed-form ridge classifier; returns train_acc, eval_acc and the chosen ``lambda`` (relative to n).

    ``lam`` (relative to n) fixes the strength; by default it is picked from :data:`RIDGE_GRID` on a held-out
    ``val_fraction`` of the training rows.
    """
    _check_inputs(train_x, train_y, eval_x, eval_y)
    k = num_classes or int(max(train_y.max(), eval_y.max())) + 1
    xtr, xev, ytr = train_x.flatten(1).float(), eval_x.flatten(1).float(), train_y.long()
    n, d = xtr.shape
    if d > n:  # dual form: an (n, n) system on explicitly standardized features
        return _ridge_probe_dual(xtr, ytr, xev, eval_y, k, val_fraction, seed, lam)
    moments = _class_moments(xtr, ytr, k)
    scale = _feature_scale(xtr, moments)
    if scale is None:
        # Large offsets: centre the rows first (one copy) so that the Gram keeps its digits.
        shift = (moments[1].sum(0) / n).float()
        xtr, xev = xtr - shift, xev - shift
        moments = _class_moments(xtr, ytr, k)
        scale = _feature_scale(xtr, moments, shift)
    best, n_val = lam, int(round(n * val_fraction))
    if best is None and n_val >= 1 and n - n_val >= 2:
        val = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_val]
        x_val, y_val = xtr[val], ytr[val]  # only the held-out rows are gathered
        fit_moments = tuple(a - b for a, b in zip(moments, _class_moments(x_val, y_val, k)))
        w, b = _gram_weights(fit_moments, scale, [a * (n - n_val) for a in RIDGE_GRID])
        grid = len(RIDGE_GRID)
        # All strengths scored with one product: (n_val, d) @ (d, G*k).
        logits = (x_val @ w.permute(1, 0, 2).reshape(d, grid * k).float() + b.reshape(1, -1).float())
        scores = (logits.view(-1, grid, k).argmax(2) == y_val[:, None]).double().mean(0).tolist()
        # Ties go to the strongest regularization (first max of the reversed grid).
        best = RIDGE_GRID[grid - 1 - scores[::-1].index(max(scores))]
    elif best is None:
        best = RIDGE_GRID[len(RIDGE_GRID) // 2]
    w, b = _gram_weights(moments, scale, [best * n])
    return {"train_acc": _accuracy(xtr, ytr, w[0], b[0]), "eval_acc": _accuracy(xev, eval_y, w[0], b[0]),
            "lambda": best}


def _ridge_probe_dual(xtr, ytr, xev, eval_y, k, val_fraction, seed, lam) -> dict[str, float]:
    """ridge_probe for more features than rows: standardized copies and the (n, n) dual system."""
    xtr, xev = _standardize(xtr, xev)
    n = xtr.shape[0]
    onehot = torch.nn.functional.one_hot(ytr, k).float()  # (n, k)
    best, n_val = lam, int(round(n * val_fraction))
    if best is None and n_val >= 1 and n - n_val >= 2:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        fit, val = order[n_val:], order[:n_val]
        solver = _RidgeSolver(xtr[fit], onehot[fit])
        x_val, y_val = xtr[val], ytr[val]
        scores = [_accuracy(x_val, y_val, *solver.weights(a * len(fit))) for a in RIDGE_GRID]
        best = RIDGE_GRID[len(RIDGE_GRID) - 1 - scores[::-1].index(max(scores))]
    elif best is None:
        best = RIDGE_GRID[len(RIDGE_GRID) // 2]
    w, b = _RidgeSolver(xtr, onehot).weights(best * n)
    return {"train_acc": _accuracy(xtr, ytr, w, b), "eval_acc": _accuracy(xev, eval_y, w, b), "lambda": best}


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
