"""Linear centered kernel alignment (CKA) between layer representations.

Two estimators:

- :func:`linear_cka` / :func:`cka_matrix`: the feature form
  ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` on column-centred
  features. It never builds an (n, n) Gram matrix, so n = 10k images cost
  only (d1, d2) products; centring and the self norms are computed once per
  layer and reused across the whole grid.
- :class:`MinibatchCKA`: the unbiased-HSIC estimator averaged over
  minibatches (Nguyen, Raghu & Kornblith, 2021) for representations too
  wide to hold for all images at once (unpooled conv maps); it streams.

Degenerate rule (both estimators): a representation with zero variance
(every feature constant over the images) carries no information, so its CKA
with anything, itself included, is defined as 0. No NaN is ever returned
for finite input.
"""

from __future__ import annotations

import torch

from replearn.errors import ReplearnError

# Features whose spread is below this fraction of their magnitude are treated as
# constant: float64 centring of a constant column leaves round-off, not signal.
_CONSTANT_TOL = 1e-9


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 2 or y.dim() != 2:
        raise ReplearnError(f"CKA needs 2-D (n, d) features, got shapes {tuple(x.shape)} and {tuple(y.shape)}; "
                            "flatten or pool first")
    if x.shape[0] != y.shape[0]:
        raise ReplearnError(f"CKA needs the same images for both representations, got {x.shape[0]} and {y.shape[0]} rows")
    if x.shape[0] < 2:
        raise ReplearnError("CKA needs at least 2 images; pass more examples")


def _check_rows(feats_a: dict, feats_b: dict | None) -> None:
    if not feats_a or (feats_b is not None and not feats_b):
        raise ReplearnError("CKA got an empty layer dict; pass non-empty dicts of (n, d) features")
    first = next(iter(feats_a))
    n = feats_a[first].shape[0]
    for name, value in list(feats_a.items()) + list((feats_b or {}).items()):
        if value.shape[0] != n:
            raise ReplearnError(f"layer {name} has {value.shape[0]} rows but {first} has {n}; "
                                "CKA needs features of the same images")
    if n < 2:
        raise ReplearnError("CKA needs at least 2 images; pass more examples")


class _Centred:
    """Column-centred features scaled to unit Frobenius norm, and their self norm ||Xc^T Xc||_F.

    Norms and CKA sums are accumulated in float64. With ``dtype=float32`` the centred
    copy and the products stay in single precision (2-3x faster on CPU); unit
    scaling keeps them well conditioned.
    """

    def __init__(self, x: torch.Tensor, dtype: torch.dtype = torch.float64):
        x = x.detach().flatten(1).to(dtype)  # (n, d)
        # torch reduces in cascaded blocks, so a float32 mean is accurate to ~1e-7 relative.
        xc = x - x.mean(0, keepdim=True)
        constant = xc.abs().amax(0) <= _CONSTANT_TOL * x.abs().amax(0)
        if constant.any():
            xc[:, constant] = 0.0
        fro = float(torch.linalg.vector_norm(xc, dtype=torch.float64))
        # CKA is scale invariant: unit scale only conditions the products.
        self.xc = xc / fro if fro > 0 else xc
        n, d = xc.shape
        # ||Xc^T Xc||_F == ||Xc Xc^T||_F: use whichever matrix is smaller.
        gram = self.xc.T @ self.xc if d <= n else self.xc @ self.xc.T
        self.norm = float(torch.linalg.matrix_norm(gram.double())) if fro > 0 else 0.0

    def cka(self, other: _Centred) -> float:
        if self.norm == 0.0 or other.norm == 0.0:
            return 0.0
        cross = float((other.xc.T @ self.xc).double().square().sum())
        # Round-off can push the ratio a hair above 1.
        return min(cross / (self.norm * other.norm), 1.0)


class CentredLayers:
    """Per-layer centred features of one model, cached for any number of CKA queries.

    ``grid()``: within-model CKA; ``participation_ratios()``: effective
    dimensionality per layer (free from the same products); ``paired(other)``:
    CKA of each layer with the same-named layer of another model.
    """

    def __init__(self, feats: dict[str, torch.Tensor], dtype: torch.dtype = torch.float64):
        _check_rows(feats, None)
        self.names = list(feats)
        self.cache = {k: _Centred(v, dtype) for k, v in feats.items()}

    def grid(self) -> torch.Tensor:
        names = self.names
        out = torch.zeros(len(names), len(names), dtype=torch.float64)
        for i, a in enumerate(names):
            out[i, i] = 1.0 if self.cache[a].norm > 0 else 0.0
            for j in range(i + 1, len(names)):
                out[i, j] = out[j, i] = self.cache[a].cka(self.cache[names[j]])
        return out

    def participation_ratios(self) -> dict[str, float]:
        # Unit-Frobenius features: tr(C) = 1, so (sum λ)^2 / sum λ^2 = 1 / ||C||_F^2.
        return {k: (1.0 / c.norm**2 if c.norm > 0 else 0.0) for k, c in self.cache.items()}

    def paired(self, other: CentredLayers) -> dict[str, float]:
        return {k: self.cache[k].cka(other.cache[k]) for k in self.names if k in other.cache}


def linear_cka(x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype = torch.float64) -> float:
    """Linear CKA between features ``x`` (n, d1) and ``y`` (n, d2) of the same n images."""
    _check_pair(x, y)
    return _Centred(x, dtype).cka(_Centred(y, dtype))


def cka_matrix(
    feats_a: dict[str, torch.Tensor],
    feats_b: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """CKA between every layer of ``feats_a`` (rows) and every layer of ``feats_b`` (columns).

    With ``feats_b=None`` the grid is within one model: symmetric, computed on
    the upper triangle, diagonal 1 (0 for constant layers). For two models,
    both dicts must hold features of the same images in the same order; this
    is also how models of different depths are compared (rectangular grid).
    ``dtype=torch.float32`` runs the (n, d) products in single precision
    (about 2.5x faster on CPU; agrees with float64 to ~1e-6, see tests).
    Returns a float64 tensor (len(feats_a), len(feats_b)).
    """
    _check_rows(feats_a, feats_b)
    names_a = list(feats_a)
    if feats_b is None:
        return CentredLayers(feats_a, dtype).grid()
    cache_a = {k: _Centred(v, dtype) for k, v in feats_a.items()}
    names_b = list(feats_b)
    cache_b = {k: _Centred(v, dtype) for k, v in feats_b.items()}
    out = torch.zeros(len(names_a), len(names_b), dtype=torch.float64)
    for i, a in enumerate(names_a):
        for j, b in enumerate(names_b):
            out[i, j] = cache_a[a].cka(cache_b[b])
    return out


def cross_model_cka(
    feats_a: dict[str, torch.Tensor], feats_b: dict[str, torch.Tensor], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """CKA grid between the layers of two models (e.g. different depths) on the same images."""
    return cka_matrix(feats_a, feats_b, dtype)


class _GramStats:
    """A (b, b) Gram matrix with zeroed diagonal and its sums, computed once per layer and batch."""

    def __init__(self, x: torch.Tensor):
        x = x.detach().to(torch.float64).flatten(1)  # (b, d)
        self.k = x @ x.T  # (b, b)
        self.k.fill_diagonal_(0.0)
        self.colsum = self.k.sum(0)  # (b,)
        self.total = self.colsum.sum()


def _unbiased_hsic(a: _GramStats, c: _GramStats) -> torch.Tensor:
    """Unbiased HSIC estimator (Song et al., 2012) for two Gram matrices of b >= 4 images."""
    b = a.k.shape[0]
    trace = (a.k * c.k).sum()
    mixed = (a.colsum * c.colsum).sum()  # 1^T K L 1
    return (trace + a.total * c.total / ((b - 1) * (b - 2)) - 2.0 * mixed / (b - 2)) / (b * (b - 3))


class MinibatchCKA:
    """Streamed linear CKA from per-minibatch unbiased HSIC (Nguyen et al., 2021).

    Call :meth:`update` with the features of one batch of images for every
    layer of model A (and optionally model B: same images), then
    :meth:`compute`. Only (b, b) Gram matrices are ever held, so unpooled conv
    maps of any width fit. Unbiased HSIC can be slightly negative for unrelated
    layers; values are reported as computed (not clipped) except that a layer
    with zero accumulated self-HSIC gets CKA 0.
    """

    def __init__(self) -> None:
        self.names_a: list[str] | None = None
        self.names_b: list[str] | None = None
        self.cross: torch.Tensor | None = None
        self.self_a: torch.Tensor | None = None
        self.self_b: torch.Tensor | None = None
        self.batches = 0

    def update(self, feats_a: dict[str, torch.Tensor], feats_b: dict[str, torch.Tensor] | None = None) -> None:
        """Accumulate one minibatch (at least 4 images; same images for every layer)."""
        sizes = {v.shape[0] for v in list(feats_a.values()) + list((feats_b or {}).values())}
        if len(sizes) != 1 or min(sizes) < 4:
            raise ReplearnError(f"MinibatchCKA.update needs one batch size >= 4 for every layer, got {sorted(sizes)}")
        if self.names_a is None:
            self.names_a = list(feats_a)
            self.names_b = list(feats_b) if feats_b is not None else None
            rows, cols = len(self.names_a), len(self.names_b or self.names_a)
            self.cross = torch.zeros(rows, cols, dtype=torch.float64)
            self.self_a = torch.zeros(rows, dtype=torch.float64)
            self.self_b = torch.zeros(cols, dtype=torch.float64)
        elif list(feats_a) != self.names_a or (feats_b is not None and list(feats_b) != self.names_b):
            raise ReplearnError("MinibatchCKA.update got different layers than the first batch; "
                                "pass the same layer dicts every batch")
        grams_a = [_GramStats(v) for v in feats_a.values()]
        grams_b = [_GramStats(v) for v in feats_b.values()] if feats_b is not None else grams_a
        for i, ka in enumerate(grams_a):
            self.self_a[i] += _unbiased_hsic(ka, ka)
        if feats_b is None:
            self.self_b = self.self_a
        else:
            for j, kb in enumerate(grams_b):
                self.self_b[j] += _unbiased_hsic(kb, kb)
        for i, ka in enumerate(grams_a):
            for j, kb in enumerate(grams_b):
                if feats_b is None and j < i:
                    continue
                self.cross[i, j] += _unbiased_hsic(ka, kb)
                if feats_b is None:
                    self.cross[j, i] = self.cross[i, j]
        self.batches += 1

    def compute(self) -> torch.Tensor:
        """The (rows, cols) CKA grid over all batches seen so far (float64)."""
        if self.cross is None:
            raise ReplearnError("MinibatchCKA.compute called before any update; feed at least one batch")
        denom = torch.sqrt(self.self_a.clamp(min=0)[:, None] * self.self_b.clamp(min=0)[None, :])
        out = torch.where(denom > 0, self.cross / denom.clamp(min=1e-300), torch.zeros_like(denom))
        return out


def minibatch_cka(x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Minibatch unbiased linear CKA between ``x`` and ``y`` (same images, in order); tail batch dropped."""
    _check_pair(x.flatten(1), y.flatten(1))
    if batch_size < 4 or batch_size > x.shape[0]:
        raise ReplearnError(f"batch_size={batch_size} is invalid: use 4 <= batch_size <= n={x.shape[0]}")
    acc = MinibatchCKA()
    for start in range(0, x.shape[0] - batch_size + 1, batch_size):
        acc.update({"x": x[start:start + batch_size]}, {"y": y[start:start + batch_size]})
    return float(acc.compute()[0, 0])
