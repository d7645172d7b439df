"""The radial spectral centroid of images: how fine their detail is (act-max scoring and the analysis)."""

from __future__ import annotations

import torch

from replearn.errors import ReplearnError


def spectral_centroid(images: torch.Tensor) -> torch.Tensor:
    """Radial spectral centroid (cycles/pixel, 0 to ~0.71) of each image in (U, C, H, W); NaN if flat.

    Each image's mean is removed, the power spectrum is summed over
    channels, and the centroid is sum(f * P) / sum(P) with f = |(fy, fx)|.
    """
    if images.dim() != 4:
        raise ReplearnError(f"spectral_centroid needs (U, C, H, W) images, got shape {tuple(images.shape)}")
    x = images.detach().to(torch.float64)
    x = x - x.mean((2, 3), keepdim=True)
    power = torch.fft.fft2(x).abs().square().sum(1)  # (U, H, W)
    fy = torch.fft.fftfreq(x.shape[2], dtype=torch.float64)
    fx = torch.fft.fftfreq(x.shape[3], dtype=torch.float64)
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()  # (H, W)
    total = power.sum((1, 2))
    weighted = (power * radius).sum((1, 2))
    return torch.where(total > 0, weighted / total.clamp(min=1e-300), torch.full_like(total, float("nan")))
