"""Data priors for activation maximization, fitted once per dataset and cached.

A :class:`DataPrior` holds a PCA (whitening) basis of the training images and a
Gaussian mixture over the leading whitened coordinates. Act-max then optimizes a
whitened code ``z`` instead of pixels (the grayscale, spatial analogue of Lucid's
colour decorrelation) and may add ``weight * log p(z)`` to the objective
(Montavon et al.'s "AM with an expert"):

- ``pca``: the decorrelated parameterization alone;
- ``gaussian``: plus a standard-normal density on the whitened code;
- ``gmm``: plus the Gaussian mixture on the leading coordinates (standard normal on the rest).

The PCA lives in logit space (``logit(eps + (1 - 2 eps) x)``), so a rendered image
``sigmoid(mean + (z * scale) @ basis)`` is always a valid picture with the data's
near-binary strokes. :func:`random_transform` supplies the transformation robustness
(random shift, rotation and scale per step).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from replearn.cache import cache_dir, cached, content_key
from replearn.errors import ReplearnError

DATA_PRIORS = ("pca", "gaussian", "gmm")
PRIOR_VERSION = 2  # bump when the fitted contents change meaning, so old cache entries are not reused


@dataclass
class DataPrior:
    """A fitted prior: PCA basis (K, D) in logit space, scales (K,), and a GMM over the first ``gmm_dims`` coordinates."""

    dataset: str
    image_shape: tuple[int, int, int]
    eps: float
    mean: torch.Tensor  # (D,) logit-space mean image
    basis: torch.Tensor  # (K, D) orthonormal rows, by decreasing variance
    scale: torch.Tensor  # (K,) standard deviation along each row
    gmm_weights: torch.Tensor  # (M,)
    gmm_means: torch.Tensor  # (M, G) in whitened coordinates
    gmm_prec_chol: torch.Tensor  # (M, G, G) Cholesky factors of the precisions (sklearn's convention)
    key: str = ""

    @property
    def dims(self) -> int:
        return int(self.basis.shape[0])

    @property
    def gmm_dims(self) -> int:
        return int(self.gmm_means.shape[1])

    def check(self, dataset: str, image_shape) -> None:
        """Raise one line if this prior was fitted on another dataset or image size."""
        shape = tuple(int(s) for s in image_shape)
        if self.dataset != dataset or tuple(self.image_shape) != shape:
            raise ReplearnError(
                f"the act-max prior was fitted on {self.dataset} {tuple(self.image_shape)} but the model sees "
                f"{dataset} {shape}; fit one for this data with replearn.actmax.priors.load_prior(splits)")

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """Whitened codes (U, K) -> pixel images in [0, 1], (U, C, H, W)."""
        logits = self.mean.to(z) + (z * self.scale.to(z)) @ self.basis.to(z)  # (U, D)
        pixels = (torch.sigmoid(logits) - self.eps) / (1 - 2 * self.eps)
        return pixels.clamp(0, 1).view(-1, *self.image_shape)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixel images in [0, 1] (N, C, H, W) -> whitened codes (N, K) (the projection onto the basis)."""
        y = _to_logit(pixels.reshape(len(pixels), -1).float(), self.eps) - self.mean
        return (y @ self.basis.T) / self.scale

    def log_density(self, z: torch.Tensor, kind: str) -> torch.Tensor:
        """log density per row of (U, K), up to a constant: ``gaussian`` or ``gmm`` (see below).

        The mode of a Gaussian is the mean image, a blur no real digit looks like; real codes lie
        near radius sqrt(K) (the typical set). So the standard-normal part is scored by the density of
        its radius, ``(K - 1) log r - r^2 / 2`` (peaks at r = sqrt(K - 1)), which keeps the detail a real
        image has. ``gmm`` scores the first ``gmm_dims`` coordinates by the mixture and the rest that way.
        """
        if kind not in ("gaussian", "gmm"):
            raise ReplearnError(f"density {kind!r} is invalid; use gaussian or gmm")
        g = self.gmm_dims if kind == "gmm" else 0
        head, rest = z[:, :g], z[:, g:]
        r2 = rest.pow(2).sum(1)
        radial = 0.5 * (rest.shape[1] - 1) * r2.clamp(min=1e-12).log() - 0.5 * r2
        if kind == "gaussian":
            return radial
        # log N(x; mu_m, P_m^-1) = log|L_m| - 0.5 ||L_m^T (x - mu_m)||^2 - g/2 log(2 pi), P_m = L_m L_m^T.
        chol = self.gmm_prec_chol.to(z)
        diff = head[:, None, :] - self.gmm_means.to(z)[None]  # (U, M, G)
        proj = torch.einsum("umg,mgh->umh", diff, chol)
        log_det = torch.diagonal(chol, dim1=1, dim2=2).log().sum(1)  # (M,)
        comp = log_det - 0.5 * proj.pow(2).sum(2) - 0.5 * g * math.log(2 * math.pi)
        mix = torch.logsumexp(comp + self.gmm_weights.to(z).log(), dim=1)
        return mix + radial

    def state(self) -> dict:
        return {"dataset": self.dataset, "image_shape": list(self.image_shape), "eps": self.eps, "mean": self.mean,
                "basis": self.basis, "scale": self.scale, "gmm_weights": self.gmm_weights,
                "gmm_means": self.gmm_means, "gmm_prec_chol": self.gmm_prec_chol, "version": PRIOR_VERSION}

    @classmethod
    def from_state(cls, state: dict, key: str = "") -> DataPrior:
        return cls(state["dataset"], tuple(state["image_shape"]), float(state["eps"]), state["mean"], state["basis"],
                   state["scale"], state["gmm_weights"], state["gmm_means"], state["gmm_prec_chol"], key)


def _to_logit(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.logit(eps + (1 - 2 * eps) * x)


def fit_prior(
    images: torch.Tensor,
    dataset: str,
    components: int = 256,
    gmm_dims: int = 48,
    gmm_components: int = 20,
    eps: float = 0.01,
    max_images: int = 20_000,
    seed: int = 0,
) -> DataPrior:
    """Fit PCA (``components`` directions) and a ``gmm_components``-mixture on the first ``gmm_dims`` whitened coordinates.

    ``images`` are the uint8 training images (N, C, H, W); a seeded subset of ``max_images`` is used
    (the leading directions of 20k MNIST digits match those of 55k to within rounding for act-max).
    """
    # lazy: scikit-learn (and its threadpoolctl) cost ~0.6 s to import; only fitting a prior needs them, once per dataset
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture  # lazy: as above
    from threadpoolctl import threadpool_limits  # lazy: as above

    if images.dim() != 4 or images.dtype != torch.uint8 or len(images) < 2:
        raise ReplearnError(f"fit_prior needs uint8 training images (N, C, H, W) with N >= 2, got "
                            f"{images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(n, generator=gen)[: min(n, max_images)]
    x = images[pick].reshape(len(pick), -1).double() / 255.0
    y = _to_logit(x, eps)
    mean = y.mean(0)
    cov = torch.cov((y - mean).T)  # (D, D)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    k = min(components, len(evals), len(pick) - 1)
    order = torch.argsort(evals, descending=True)[:k]
    scale = evals[order].clamp(min=1e-8).sqrt()
    basis = evecs[:, order].T.contiguous()  # (K, D)
    z = ((y - mean) @ basis.T) / scale  # (N, K) whitened
    g = min(gmm_dims, k)
    # One BLAS thread: on a shared 2-core machine the threaded EM measured ~7x slower. 20 EM steps
    # are not fully converged, which a prior does not need (held-out log-likelihood within 1 nat).
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm = GaussianMixture(n_components=min(gmm_components, len(pick)), covariance_type="full", reg_covar=1e-3,
                              max_iter=20, random_state=seed).fit(z[:, :g].numpy())
    return DataPrior(
        dataset=dataset, image_shape=(c, h, w), eps=eps, mean=mean.float(), basis=basis.float(), scale=scale.float(),
        gmm_weights=torch.as_tensor(gmm.weights_, dtype=torch.float32),
        gmm_means=torch.as_tensor(gmm.means_, dtype=torch.float32),
        gmm_prec_chol=torch.as_tensor(gmm.precisions_cholesky_, dtype=torch.float32),
    )


def _validate(state: dict, dataset: str, shape: tuple[int, ...], components: int) -> None:
    if state.get("version") != PRIOR_VERSION or state.get("dataset") != dataset \
            or not isinstance(state.get("image_shape"), list) or tuple(state["image_shape"]) != shape:
        raise ValueError("fitted for other data or by another version")
    eps = state.get("eps")
    if not isinstance(eps, float) or not 0 < eps < 0.5:
        raise ValueError(f"eps {eps!r} is not a number in (0, 0.5)")
    names = ("mean", "basis", "scale", "gmm_weights", "gmm_means", "gmm_prec_chol")
    tensors = [state.get(name) for name in names]
    if not all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in tensors):
        raise ValueError(f"{', '.join(names)} must be float32 tensors")
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise ValueError("the prior holds NaN or infinite values")
    mean, basis, scale, weights, means, chol = tensors
    d = math.prod(shape)
    if mean.shape != (d,) or basis.dim() != 2 or basis.shape[1] != d or not 0 < basis.shape[0] <= components \
            or scale.shape != basis.shape[:1] or not bool((scale > 0).all()):
        raise ValueError("basis, mean or scales have the wrong shape or values")
    if means.dim() != 2 or means.shape[1] > basis.shape[0]:
        raise ValueError("mixture means have the wrong shape")
    m, g = means.shape
    if chol.shape != (m, g, g) or weights.shape != (m,) or not bool((weights > 0).all()) \
            or not bool((torch.diagonal(chol, dim1=1, dim2=2) > 0).all()):
        raise ValueError("mixture has inconsistent shapes or values")


def load_prior(splits, seed: int = 0, components: int = 256, use_cache: bool = True) -> DataPrior:
    """The prior for ``splits`` (its uint8 ``train_x`` and ``name``), from the per-user cache or fitted once."""
    images = splits.train_x.cpu()
    shape = tuple(int(s) for s in images.shape[1:])
    # A cheap content key: the dataset name, size and a strided sample of the images.
    stride = max(1, len(images) // 2000)
    key = content_key(splits.name, tuple(images.shape), images[::stride], seed, components, PRIOR_VERSION)
    state = cached("actmax_priors", key,
                   lambda: fit_prior(images, splits.name, components=components, seed=seed).state(),
                   lambda s: _validate(s, splits.name, shape, components), use_cache=use_cache)
    return DataPrior.from_state(state, key)


def prior_cache_path(key: str):
    """Where the prior with ``key`` is cached (for messages and tests)."""
    return cache_dir("actmax_priors") / f"{key}.pt"


def random_transform(images: torch.Tensor, generator: torch.Generator, shift: float = 2.0, degrees: float = 10.0,
                     scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """Each image of (U, C, H, W) (pixels in [0, 1], black outside) shifted by up to ``shift`` px, rotated and scaled.

    Act-max images that survive these small nuisances do not rely on exact pixel positions,
    which is what high-frequency adversarial patterns do.
    """
    u, _, h, w = images.shape
    rnd = torch.rand(u, 4, generator=generator).to(images.device)
    angle = (rnd[:, 0] * 2 - 1) * math.radians(degrees)
    zoom = scale[0] + rnd[:, 1] * (scale[1] - scale[0])
    tx = (rnd[:, 2] * 2 - 1) * shift * 2 / w  # affine_grid works in [-1, 1] coordinates
    ty = (rnd[:, 3] * 2 - 1) * shift * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (U, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
