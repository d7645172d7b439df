"""2-D embeddings of a layer's test-set representations, coloured by class."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from replearn.errors import ReplearnError
from replearn.viz.grid import new_figure

METHODS = ("pca", "tsne")


def principal_components(x: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """``(N, k)`` coordinates of centred float64 ``x`` (N, D) on its top-``k`` principal axes.

    Exact SVD up to 512 features; above that a seeded randomized SVD (Halko et al., 10 extra
    dimensions, 7 power iterations), as scikit-learn's PCA does at that size. Each axis is signed so
    that its largest loading is positive (scikit-learn's convention), so results are reproducible.
    """
    n, d = x.shape
    if d <= 512:
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        axes = vh[:k].T  # (D, k)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, v = torch.svd_lowrank(x, q=min(k + 10, n, d), niter=7)
        axes = v[:, :k]
    biggest = axes.abs().argmax(0)  # (k,)
    axes = axes * torch.sign(axes[biggest, torch.arange(axes.shape[1])])
    return x @ axes


def embed_2d(features: torch.Tensor, method: str = "pca", seed: int = 0, tsne_iter: int = 1000) -> np.ndarray:
    """Project ``(N, ...)`` representations to ``(N, 2)`` with PCA or t-SNE (seeded, deterministic).

    PCA runs in torch (importing scikit-learn alone would cost more than the projection); t-SNE
    first reduces to 50 principal components: it keeps the neighbourhoods and makes wide conv
    layers affordable.
    """
    if method not in METHODS:
        raise ReplearnError(f"embedding={method!r} is invalid: choose one of {', '.join(METHODS)}")
    x = features.detach().reshape(len(features), -1).double().cpu()  # (N, D)
    n, d = x.shape
    if n < 3:
        raise ReplearnError(f"a 2-D embedding needs at least 3 samples, got {n}; raise embedding_samples")
    if d < 2:
        return np.concatenate([x.numpy(), np.zeros((n, 2 - d))], axis=1)
    x = x - x.mean(0)
    if method == "pca":
        return principal_components(x, 2, seed).numpy()
    # lazy: scikit-learn costs over half a second to import, and only t-SNE needs it (PCA runs in torch)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # lazy: ships with scikit-learn, as above

    if d > 50:
        x = principal_components(x, min(50, n), seed)
    perplexity = float(min(30.0, (n - 1) / 3))
    # One BLAS/OpenMP thread: these pools fight torch's own threads for the same cores
    # (a 40-point t-SNE took 10 s instead of well under one).
    with threadpool_limits(1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    max_iter=max(250, tsne_iter)).fit_transform(x.numpy())


def _class_names(labels: np.ndarray, classes: Sequence[str] | None) -> list[str]:
    count = int(labels.max()) + 1 if len(labels) else 0
    if classes is None:
        return [str(c) for c in range(count)]
    return list(classes)


def plot_embedding(
    points: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    classes: Sequence[str] | None = None,
    title: str | None = None,
    legend: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Scatter ``(N, 2)`` points coloured by class label ``(N,)`` (tab10 colours)."""
    pts = np.asarray(points.cpu() if isinstance(points, torch.Tensor) else points, dtype=float)
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(int)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(lab) != len(pts):
        raise ReplearnError(f"expected points (N, 2) and labels (N,), got {pts.shape} and {lab.shape}")
    names = _class_names(lab, classes)
    if ax is None:
        fig = new_figure(4.6 if legend else 3.4, 3.4)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    for c, name in enumerate(names):
        mask = lab == c
        if mask.any():
            ax.scatter(pts[mask, 0], pts[mask, 1], s=4, alpha=0.7, color=palette(c % palette.N),
                       label=name, linewidths=0, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=3, frameon=False)
    return fig


def plot_embeddings_by_layer(
    points: Mapping[str, np.ndarray],
    labels: np.ndarray | torch.Tensor,
    *,
    classes: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One small embedding per layer, side by side in forward order: how class structure emerges."""
    if not points:
        raise ReplearnError("plot_embeddings_by_layer got no layers")
    n = len(points)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = new_figure(2.4 * ncols + 0.9, 2.4 * nrows + 0.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, (name, pts) in enumerate(points.items()):
        plot_embedding(pts, labels, classes=classes, title=name, legend=False, ax=axes[i])
    for extra in axes[n:]:
        extra.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", fontsize=7, markerscale=3, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
