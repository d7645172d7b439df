"""Within-class concept probes: how linearly a layer encodes each part's presence, count and position.

Network dissection needs a spatial map per unit; MLP units and logits have none. These probes need
only a feature vector per image, so MLPs and CNNs are measured alike. Each target (say, the number
of endpoints) is decoded by ridge regression from a layer's features after the class has been
regressed out of both features and target: any layer that decodes the class would otherwise "know"
every part that comes with the class (a 0 has a loop). What is left is whether the layer tells
apart two images *of the same class* by their parts - a 4 with a closed top from an open one.

The score is the R^2 on held-out images, about the within-class variance of the target:
1 = the part's within-class variation is linearly readable; 0 = no better than the class alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from replearn.analysis.features import random_projection
from replearn.dissection.concepts import ConceptMasks
from replearn.errors import ReplearnError

KINDS = ("presence", "count", "position_y", "position_x")
#: A target scores NaN unless each split has this many valid rows beyond one per class (its class means):
#: with fewer, R^2 rests on a handful of images (a part in 17 of 300 synthetic images scored -2 from a net's logits).
MIN_DOF = 20
#: Ridge strengths relative to the number of fit rows (features are scaled to a mean within-class variance of 1,
#: so alpha = 1 weighs the penalty like one average feature).
ALPHA_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
# Each image is its own plane: 8-connected within an image, never across images of the stack.
_PER_IMAGE_8 = np.zeros((3, 3, 3), dtype=bool)
_PER_IMAGE_8[1] = True


@dataclass
class ConceptTargets:
    """Regression targets of N images: ``values`` float32 (N, T), ``valid`` bool (N, T), one name per column."""

    values: torch.Tensor
    names: list[str]
    concept: list[str]
    level: torch.Tensor
    kind: list[str]
    valid: torch.Tensor

    def __len__(self) -> int:
        return self.values.shape[0]

    def subset(self, index) -> ConceptTargets:
        """The targets of some images (any index a tensor accepts on its first axis)."""
        return ConceptTargets(self.values[index], self.names, self.concept, self.level, self.kind, self.valid[index])


def components_per_image(stack: np.ndarray) -> np.ndarray:
    """int64 (N,): 8-connected components of each bool (H, W) mask of a stack (N, H, W), in one labelling."""
    labels, total = ndimage.label(stack, structure=_PER_IMAGE_8)  # (N, H, W) int32
    if total == 0:
        return np.zeros(len(stack), dtype=np.int64)
    image_of = np.zeros(total + 1, dtype=np.int64)
    where = np.nonzero(labels)
    image_of[labels[where]] = where[0]  # every pixel of a component lies in one image
    return np.bincount(image_of[1:], minlength=len(stack)).astype(np.int64)


def part_targets(concept_masks: ConceptMasks, levels=(1, 2)) -> ConceptTargets:
    """Four targets per concept of ``levels``: presence, count, position_y, position_x.

    - presence (1 if any pixel of the mask is set): is the part there at all;
    - count (8-connected components of the mask): how many there are - two endpoints, not one;
    - position_y / position_x (centroid row / column of the mask, in [0, 1], 0 = top / left): where it is.
      Valid only where the part is present (``valid`` is False and ``values`` NaN elsewhere).
    """
    keep = [k for k, c in enumerate(concept_masks.concepts) if c.level in set(levels)]
    if not keep:
        raise ReplearnError(f"no concept has a level in {tuple(levels)}; choose levels among "
                            f"{sorted({c.level for c in concept_masks.concepts})}")
    masks = concept_masks.masks[:, keep].numpy()  # (N, K, H, W)
    n, k, h, w = masks.shape
    # Pixels per row and per column (small integer sums: ~2x faster than float ones over the whole stack).
    per_row = masks.view(np.uint8).sum(axis=3, dtype=np.uint16)  # (N, K, H)
    per_col = masks.view(np.uint8).sum(axis=2, dtype=np.uint16)  # (N, K, W)
    pixels = per_row.sum(axis=2, dtype=np.int64)  # (N, K)
    present = pixels > 0
    safe = np.where(present, pixels, 1)
    row = (per_row @ np.arange(h, dtype=np.float64)) / safe / max(h - 1, 1)  # (N, K) centroid row in [0, 1]
    col = (per_col @ np.arange(w, dtype=np.float64)) / safe / max(w - 1, 1)
    count = np.stack([components_per_image(masks[:, j]) for j in range(k)], axis=1)  # (N, K)
    per_kind = {"presence": (present, None), "count": (count, None),
                "position_y": (np.where(present, row, np.nan), present),
                "position_x": (np.where(present, col, np.nan), present)}
    values, valid = [], []
    for j in range(k):
        for kind in KINDS:
            v, ok = per_kind[kind]
            values.append(v[:, j])
            valid.append(np.ones(n, dtype=bool) if ok is None else ok[:, j])
    concepts = [concept_masks.concepts[i] for i in keep]
    return ConceptTargets(
        values=torch.from_numpy(np.stack(values, axis=1).astype(np.float32)),
        names=[f"{c.name}:{kind}" for c in concepts for kind in KINDS],
        concept=[c.name for c in concepts for _ in KINDS],
        level=torch.tensor([c.level for c in concepts for _ in KINDS], dtype=torch.int64),
        kind=[kind for _ in concepts for kind in KINDS],
        valid=torch.from_numpy(np.stack(valid, axis=1)),
    )


def _within_class_features(x_fit, y_fit, x_eval, y_eval, k):
    """Features minus their fit-split class means, divided by one number: the fit split's within-class RMS
    deviation over all features. float64 (n, D), (m, D).

    One scale for the whole layer, not one per feature, keeps the layer's own geometry: a pixel inked in a
    single fit image would otherwise be blown up to unit variance, and a new image with ink there would get a
    wild prediction (on 500 MNIST digits per-feature scaling drove the pixels' mean R^2 as low as -0.4).
    The single scale makes the ridge strengths of ALPHA_GRID mean the same for every layer.
    """
    xf, xe = x_fit.flatten(1).double(), x_eval.flatten(1).double()
    onehot = torch.nn.functional.one_hot(y_fit, k).double()  # (n, k)
    means = (onehot.T @ xf) / onehot.sum(0).clamp(min=1)[:, None]  # (k, D)
    zf = xf - means[y_fit]
    spread = float(zf.square().mean().sqrt())
    # No within-class variation at all (a pure class code): every weight stays 0 and every R^2 at 0 (or NaN).
    scale = 1.0 / spread if spread > 1e-12 * float(xf.abs().max().clamp(min=1e-300)) else 0.0
    return zf * scale, (xe - means[y_eval]) * scale


@dataclass
class _Moments:
    """Raw moments of some rows: Gram (D, D), cross (D, Tg), class sums of z (k, D) and t (k, Tg), counts (k,)."""

    gram: torch.Tensor
    cross: torch.Tensor
    sum_z: torch.Tensor
    sum_t: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def of(cls, z, t, y, rows, k, full_gram) -> _Moments:
        """Moments of the rows where ``rows`` (bool (n,)) is set; ``full_gram`` is z^T z over all n rows."""
        weight = rows.double()[:, None]
        onehot = torch.nn.functional.one_hot(y, k).double() * weight  # (n, k), zero outside rows
        n_in = int(rows.sum())
        if n_in <= len(rows) - n_in:  # the Gram from the smaller side of the split
            part = z[rows]
            gram = part.T @ part
        else:
            out = z[~rows]
            gram = full_gram - out.T @ out
        # (T^T Z)^T, not Z^T T: the skinny product is faster transposed.
        return cls(gram, ((t * weight).T @ z).T, onehot.T @ z, onehot.T @ t, onehot.sum(0))

    def centred(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Gram (D, D) and cross moments (D, Tg) about each row's class mean (over these rows)."""
        inv = torch.where(self.counts > 0, 1.0 / self.counts.clamp(min=1), torch.zeros_like(self.counts))
        mu_z = self.sum_z * inv[:, None]  # (k, D)
        # sum_c n_c mu_c mu_c^T = mu^T (class sums); likewise for the cross moments.
        return self.gram - mu_z.T @ self.sum_z, self.cross - mu_z.T @ self.sum_t

    @property
    def rows(self) -> float:
        return float(self.counts.sum())


def _ridge_gcv(gram, rhs, tss, rows: float, dof: float, alpha: float | None) -> tuple[torch.Tensor, list[float]]:
    """Ridge weights (D, Tg) from a within-class Gram (D, D) and cross moments (D, Tg), and each target's strength.

    The strength (lambda = alpha * rows) is ``alpha`` or, per target, the one of ALPHA_GRID with the least
    generalized cross-validation error RSS / (dof - df)^2 (Golub, Heath & Wahba 1979; ``dof`` = rows less one
    per class mean, df = the fit's effective parameters): every fit row counts, not a small held-out slice,
    and one eigendecomposition gives every strength's residuals from the moments alone.
    """
    evals, evecs = torch.linalg.eigh(gram)
    evals = evals.clamp(min=0)  # rounding can leave tiny negative eigenvalues of a rank-deficient Gram
    proj = evecs.T @ rhs  # (D, Tg)
    grid = ALPHA_GRID if alpha is None else (alpha,)
    lams = torch.tensor(grid, dtype=torch.float64) * max(rows, 1.0)  # (A,)
    denom = evals[None] + lams[:, None]  # (A, D)
    # Residual sum of squares at each strength: tss - 2 w^T rhs + w^T G w, in the eigenbasis.
    explained = ((evals[None] + 2 * lams[:, None]) / denom.square()) @ proj.square()  # (A, Tg)
    rss = (tss[None] - explained).clamp(min=0)
    left = dof - (evals[None] / denom).sum(1)  # (A,)
    gcv = torch.where(left[:, None] > 0, rss / left.clamp(min=1e-300)[:, None].square(), torch.inf)
    best = len(grid) - 1 - gcv.flip(0).argmin(0)  # (Tg,); ties go to the strongest regularization
    w = evecs @ (proj / denom[best].T)  # (D, Tg)
    return w, [grid[int(i)] for i in best]


def _within_ss(t, y, rows, k) -> torch.Tensor:
    """Sum of squares (Tg,) of targets ``t`` (n, Tg) about their class means over ``rows`` (bool (n, Tg))."""
    w = rows.double()
    onehot = torch.nn.functional.one_hot(y, k).double()  # (n, k)
    means = (onehot.T @ (t * w)) / (onehot.T @ w).clamp(min=1)  # (k, Tg)
    return ((t - means[y]).square() * w).sum(0)


def _no_variance(ss, t, rows) -> torch.Tensor:
    """True where a within-class sum of squares is zero up to rounding (relative to the target's size)."""
    return ss <= 1e-9 * (t.square() * rows.double()).sum(0)


def _nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _summary(targets: ConceptTargets, r2: list[float], alphas: list[float]) -> dict:
    levels = targets.level.tolist()
    out: dict = {f"l{lv}": _nanmean([r for r, x in zip(r2, levels) if x == lv]) for lv in sorted(set(levels))}
    out["by_kind"] = {kind: {f"l{lv}": _nanmean([r for r, x, kd in zip(r2, levels, targets.kind) if x == lv and kd == kind])
                             for lv in sorted(set(levels))} for kind in KINDS if kind in targets.kind}
    out["per_target"] = dict(zip(targets.names, r2))
    out["alpha"] = dict(zip(targets.names, alphas))
    return out


def _check(feats, targets, labels, split: str) -> None:
    if not isinstance(targets, ConceptTargets):
        raise ReplearnError(f"{split} targets are a {type(targets).__name__}; build them with part_targets(masks)")
    if not (feats.shape[0] == len(targets) == labels.shape[0]):
        raise ReplearnError(f"{split} features, targets and labels disagree: {feats.shape[0]}, {len(targets)} and "
                            f"{labels.shape[0]} rows; pass one row per image to each")
    if not bool(torch.isfinite(feats.sum())):
        raise ReplearnError(f"{split} features contain NaN/inf (diverged model?); probe a finite checkpoint")


def within_class_probe(train_feats: torch.Tensor, train_targets: ConceptTargets, train_labels: torch.Tensor,
                       eval_feats: torch.Tensor, eval_targets: ConceptTargets, eval_labels: torch.Tensor,
                       alpha: float | None = None) -> dict:
    """Held-out R^2 of a ridge regression from features (N, D) to each target, with the class regressed out.

    The fit split's per-class means are subtracted from features and targets, so the ridge fits within-class
    deviations only (features are then scaled by one number per layer, see ``_within_class_features``).
    The score on the eval split is R^2 = 1 - SSE / SST, both about the eval split's own class means: SST is
    the target's within-class variance there, SSE that of the residual. (Fit-split means at scoring time
    would charge every layer for their sampling error, 1/n_c of the variance and most of it for a target that
    hardly varies within a class, such as an edge missing from 0.2% of the images.) So the class alone scores
    0 and R^2 can be negative. Rows where a target is invalid are left out of its fit and score; a target
    without within-class variance on either split scores NaN. ``alpha`` fixes the ridge strength (relative to
    the fit rows, see :data:`ALPHA_GRID`); by default each target gets the strength of the grid with the least
    generalized cross-validation error on the fit split (see ``_ridge_gcv``); the eval split never chooses it.
    Returns ``{"l<level>": mean R^2 over the level's targets (NaN ignored), "by_kind": {kind: {"l<level>": ..}},
    "per_target": {name: R^2}, "alpha": {name: strength}}``.
    """
    _check(train_feats, train_targets, train_labels, "fit")
    _check(eval_feats, eval_targets, eval_labels, "eval")
    if train_targets.names != eval_targets.names:
        raise ReplearnError("fit and eval targets name different columns; split one ConceptTargets with .subset()")
    if train_feats.flatten(1).shape[1] != eval_feats.flatten(1).shape[1]:
        raise ReplearnError("fit and eval features differ in width; extract both from the same layer")
    if alpha is not None and not alpha > 0:
        raise ReplearnError(f"alpha={alpha} is invalid; use a positive ridge strength (or None to choose one)")
    yf, ye = train_labels.long().reshape(-1), eval_labels.long().reshape(-1)
    if len(yf) < 2 or len(ye) < 2:
        raise ReplearnError(f"a concept probe needs at least 2 fit and 2 eval images, got {len(yf)} and {len(ye)}; "
                            "probe more images")
    k = int(max(yf.max(), ye.max())) + 1
    zf, ze = _within_class_features(train_feats, yf, eval_feats, ye, k)  # (n, D), (m, D) float64
    vf, ve = train_targets.valid, eval_targets.valid  # (n, T), (m, T) bool
    tf = torch.where(vf, train_targets.values, 0.0).double()
    te = torch.where(ve, eval_targets.values, 0.0).double()
    n, n_targets = tf.shape
    full_gram = zf.T @ zf  # (D, D)
    r2, alphas = [math.nan] * n_targets, [math.nan] * n_targets
    # Targets valid on the same fit rows (all presence and count targets; each concept's two positions) share moments.
    patterns, group = torch.unique(vf.T, dim=0, return_inverse=True)
    for g, rows in enumerate(patterns):
        cols = (group == g).nonzero().flatten()
        if int(rows.sum()) < 2:
            continue
        t = tf[:, cols]  # (n, Tg)
        tss = _within_ss(t, yf, rows[:, None].expand_as(t), k)  # (Tg,)
        fit_flat = _no_variance(tss, t, rows[:, None])
        moments = _Moments.of(zf, t, yf, rows, k, full_gram)
        gram, rhs = moments.centred()
        dof = moments.rows - float((moments.counts > 0).sum())  # one class mean per class present
        if dof < MIN_DOF:
            continue
        w, chosen = _ridge_gcv(gram, rhs, tss, moments.rows, dof, alpha)  # (D, Tg)
        ok = ve[:, cols]  # (m, Tg)
        # Both about the eval class means: (t - mean_c t) - (z - mean_c z) w is the residual t - z w less its class mean.
        sse = _within_ss(te[:, cols] - ze @ w, ye, ok, k)
        sst = _within_ss(te[:, cols], ye, ok, k)
        onehot_e = torch.nn.functional.one_hot(ye, k).double()  # (m, k)
        eval_dof = ok.double().sum(0) - ((onehot_e.T @ ok.double()) > 0).sum(0)  # (Tg,)
        unscored = fit_flat | _no_variance(sst, te[:, cols], ok) | (eval_dof < MIN_DOF)
        score = torch.where(unscored, math.nan, 1.0 - sse / sst.clamp(min=1e-300))
        for j, c in enumerate(cols.tolist()):
            r2[c], alphas[c] = float(score[j]), float(chosen[j])
    return _summary(train_targets, r2, alphas)


def concept_probe_layers(features: dict[str, torch.Tensor], targets: ConceptTargets, labels: torch.Tensor,
                         fit_fraction: float = 0.5, seed: int = 0, alpha: float | None = None,
                         max_dim: int | None = 1024) -> dict[str, dict]:
    """{layer: :func:`within_class_probe` summary} for features (N, D) of the N images ``targets`` describe.

    The images are split once (seeded) into a fit part (``fit_fraction``) and an eval part, the same for
    every layer. A layer with NaN/inf features gets NaN scores; the other layers are kept. Layers wider
    than ``max_dim`` are first randomly projected to it (:func:`random_projection`): each concept's position
    targets need their own (D, D) eigendecomposition: ~0.2 s at D = 784 on one thread, minutes at D = 4096.
    """
    if not 0 < fit_fraction < 1:
        raise ReplearnError(f"fit_fraction={fit_fraction} is invalid; use a fraction strictly between 0 and 1")
    labels = torch.as_tensor(labels).long().reshape(-1)
    n = len(targets)
    n_fit = int(round(n * fit_fraction))
    if n_fit < 2 or n - n_fit < 2:
        raise ReplearnError(f"{n} images give a {n_fit}/{n - n_fit} fit/eval split; concept probes need at least "
                            "2 images on each side (raise analysis.dissect_images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit, ev = order[:n_fit], order[n_fit:]
    fit_t, ev_t = targets.subset(fit), targets.subset(ev)
    out = {}
    for name, x in features.items():
        if x.shape[0] != n:
            raise ReplearnError(f"layer {name!r} has {x.shape[0]} rows for {n} images; extract features of the "
                                "images the concept masks were built from")
        if not bool(torch.isfinite(x.sum())):
            nan = [math.nan] * len(targets.names)
            out[name] = _summary(targets, nan, nan)
            continue
        if max_dim is not None:
            x = random_projection(x.flatten(1), max_dim, seed)
        out[name] = within_class_probe(x[fit], fit_t, labels[fit], x[ev], ev_t, labels[ev], alpha=alpha)
    return out
