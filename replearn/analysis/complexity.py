"""Per-layer pattern complexity: how large, how specific and how rich each layer's units are.

- effective receptive field (ERF): spread of the input gradient of a unit;
- class selectivity index (Morcos et al., 2018) of units;
- effective dimensionality: participation ratio of the feature covariance;
- spatial-frequency content: radial spectral centroid of the activation-
  maximization image of units (low = blobs/strokes, high = fine texture).

Every function is a plain measurement; comparing trained networks with
their random-init control is left to the caller.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from replearn.actmax.ascent import maximize_activations
from replearn.actmax.spectrum import spectral_centroid
from replearn.errors import ReplearnError
from replearn.recording.hooks import forward_until


def _mass_extent(grad_map: torch.Tensor, mass: float) -> tuple[float, float]:
    """(area fraction, radius in px) holding ``mass`` of a non-negative (H, W) map; NaN if the map is 0."""
    total = grad_map.sum()
    if not total > 0:
        return float("nan"), float("nan")
    h, w = grad_map.shape
    flat = grad_map.flatten() / total
    sorted_mass = flat.sort(descending=True).values.cumsum(0)
    area = (int((sorted_mass < mass).sum()) + 1) / flat.numel()
    yy, xx = torch.meshgrid(torch.arange(h, dtype=flat.dtype), torch.arange(w, dtype=flat.dtype), indexing="ij")
    p = flat.view(h, w)
    cy, cx = (p * yy).sum(), (p * xx).sum()
    dist = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt().flatten()
    order = dist.argsort()
    reached = (flat[order].cumsum(0) < mass).sum()
    radius = float(dist[order][min(int(reached), dist.numel() - 1)])
    return min(area, 1.0), radius


def effective_receptive_field(
    model: nn.Module, layer: str, images: torch.Tensor, units: list[int], mass: float = 0.9
) -> dict[str, float]:
    """Gradient-based ERF of ``units`` of ``layer``, averaged over units.

    ``images`` (B, C, H, W) are already normalized. For each unit, the map
    mean_b |d unit / d input| (summed over input channels) is computed;
    for conv maps the unit is the channel at the centre position. Reports
    ``erf_area``: fraction of pixels holding ``mass`` of the gradient mass
    (most-sensitive first), and ``erf_radius``: radius (px) around the
    map's centre of mass holding ``mass``. Units with zero gradient (dead)
    are skipped; NaN when all are.
    """
    if not units:
        raise ReplearnError("effective_receptive_field needs at least one unit")
    u, b = len(units), images.shape[0]
    # One backward for all units: each unit gets its own copy of the images, and
    # samples do not interact in eval mode, so per-sample input grads stay separate.
    x = images.detach().repeat(u, 1, 1, 1).requires_grad_(True)  # (U*B, C, H, W)
    out = forward_until(model, layer, x)
    idx = torch.tensor(units, device=out.device).repeat_interleave(b)  # (U*B,)
    rows = torch.arange(u * b, device=out.device)
    if out.dim() == 4:
        picked = out[rows, idx, out.shape[2] // 2, out.shape[3] // 2]
    elif out.dim() == 2:
        picked = out[rows, idx]
    else:
        raise ReplearnError(f"layer {layer} outputs shape {tuple(out.shape)}; expected (B, D) or (B, C, H, W)")
    (grad,) = torch.autograd.grad(picked.sum(), x)
    maps = grad.abs().sum(1).view(u, b, *grad.shape[2:]).mean(1).double().cpu()  # (U, H, W)
    extents = [_mass_extent(m, mass) for m in maps]
    areas = [a for a, _ in extents if not math.isnan(a)]
    radii = [r for _, r in extents if not math.isnan(r)]
    return {
        "erf_area": sum(areas) / len(areas) if areas else float("nan"),
        "erf_radius": sum(radii) / len(radii) if radii else float("nan"),
    }


def class_selectivity(feats: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Per-unit class selectivity index (mu_max - mu_rest) / (mu_max + mu_rest), shape (D,).

    mu are per-class mean activations of each unit (``feats`` (N, D), e.g.
    channel-pooled). The index assumes non-negative responses (ReLU); a unit
    with a negative class mean is shifted so its lowest class mean is 0,
    keeping the index in [0, 1]. Units with all class means 0 get NaN.
    """
    if feats.dim() != 2 or feats.shape[0] != labels.shape[0]:
        raise ReplearnError(f"class_selectivity needs (N, D) features and N labels, "
                            f"got {tuple(feats.shape)} and {tuple(labels.shape)}")
    k = num_classes or int(labels.max()) + 1
    if k < 2:
        raise ReplearnError("class_selectivity needs at least 2 classes")
    x = feats.to(torch.float64)
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, labels.long(), x)
    counts = torch.bincount(labels.long(), minlength=k).to(torch.float64)
    present = counts > 0
    mu = sums[present] / counts[present, None]  # (K', D)
    mu = mu - mu.min(0).values.clamp(max=0)  # shift only units with a negative class mean
    top = mu.max(0).values
    rest = (mu.sum(0) - top) / (mu.shape[0] - 1)
    denom = top + rest
    return torch.where(denom > 0, (top - rest) / denom.clamp(min=1e-300), torch.full_like(denom, float("nan")))


def participation_ratio(feats: torch.Tensor) -> float:
    """Effective dimensionality (sum λ)^2 / sum λ^2 of the covariance of ``feats`` (N, D); 0 if constant.

    Equals tr(C)^2 / ||C||_F^2, so no eigendecomposition is needed; the
    (N, N) Gram matrix is used instead of the covariance when D > N.
    """
    x = feats.to(torch.float64).flatten(1)
    x = x - x.mean(0, keepdim=True)
    c = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    fro2 = float(c.square().sum())
    return float(torch.trace(c)) ** 2 / fro2 if fro2 > 0 else 0.0


def actmax_centroid(
    model: nn.Module, layer: str, units: list[int], steps: int, seed: int = 0, mean: float = 0.1307, std: float = 0.3081
) -> float:
    """Mean spectral centroid of the activation-maximization images of ``units`` of ``layer``.

    ``mean``/``std`` are the dataset's normalization (they bound the valid pixel range).
    NaN when the ascent diverges or every image stays flat (e.g. dead units).
    """
    try:
        result = maximize_activations(model, layer, units=units, steps=steps, seed=seed, progress=False, mean=mean, std=std)
    except ReplearnError:
        return float("nan")
    return nanmean(spectral_centroid(result.images))


def nanmean(values: torch.Tensor) -> float:
    """Mean of the non-NaN entries (NaN if none)."""
    values = values[~torch.isnan(values)]
    return float(values.mean()) if values.numel() else float("nan")
