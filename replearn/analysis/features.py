"""Per-layer feature matrices for probes, CKA and complexity, from one recording pass.

Every analysis measure of a model reuses the same extracted features
(the "cache"): one forward pass over the training subset and one over the
evaluation images per model. Rows are images, in input order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from replearn.errors import ReplearnError
from replearn.recording.hooks import capture_activations

INPUT, LOGITS = "input", "logits"


def random_projection(x: torch.Tensor, max_dim: int, seed: int = 0) -> torch.Tensor:
    """Project (N, D) features to ``max_dim`` dims with a fixed Gaussian matrix (entries N(0, 1/max_dim)).

    The matrix depends only on (seed, D, max_dim), so train and eval features
    of one layer -- and same-width layers of different runs -- share it.
    Distances and linear structure are preserved approximately (Johnson-Lindenstrauss).
    """
    d = x.shape[1]
    if d <= max_dim:
        return x
    gen = torch.Generator().manual_seed(seed * 1_000_003 + d)
    proj = torch.randn(d, max_dim, generator=gen) / max_dim**0.5  # (D, max_dim)
    return x.float() @ proj.to(x.device)


def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    layers: list[str] | str = "all",
    pool: str = "mean",
    max_dim: int = 4096,
    seed: int = 0,
    batch_size: int = 1000,
    include_input: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """{layer: (N, D) float32 CPU features} for ``images`` (uint8 or float (N, C, H, W)).

    ``layers="all"`` means every hidden block plus the head; the head is
    stored as ``"logits"`` and flattened pixels as ``"input"`` (references for
    probes and CKA). Conv maps are pooled per channel (``pool`` mean|max);
    ``pool="none"`` keeps flattened maps. Layers wider than ``max_dim`` are
    randomly projected (:func:`random_projection`). Keys follow forward order.
    """
    if pool not in ("mean", "max", "none"):
        raise ReplearnError(f"pool={pool!r} is invalid; use mean, max or none")
    if images.dim() != 4:
        raise ReplearnError(f"extract_features needs images (N, C, H, W), got shape {tuple(images.shape)}")
    names = model.layer_names() if layers == "all" else list(layers)
    unknown = [n for n in names if n not in model.layer_names()]
    if unknown:
        raise ReplearnError(f"unknown layers {unknown}; choose from {model.layer_names()}")
    acts = capture_activations(model, images, layers=names, batch_size=batch_size, pool=pool, device=device, normalize=normalize)
    out: dict[str, torch.Tensor] = {}
    if include_input:
        pixels = normalize(images) if normalize is not None else images.float()
        out[INPUT] = random_projection(pixels.flatten(1).float().cpu(), max_dim, seed)
    for name in names:
        x = acts[name].detach().flatten(1).float().cpu()
        out[LOGITS if name == "head" else name] = random_projection(x, max_dim, seed)
    return out


def layer_positions(names: list[str]) -> list[float]:
    """Relative depth in [0, 1] of feature keys: input 0, logits 1, hidden blocks evenly in between."""
    if len(names) == 1:
        return [0.0]
    return [i / (len(names) - 1) for i in range(len(names))]


def save_features(path: str | Path, feats: dict[str, torch.Tensor]) -> None:
    """Store a feature dict (e.g. a run's test-set features) for later cross-run CKA."""
    torch.save({k: v.contiguous() for k, v in feats.items()}, Path(path))


def load_features(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a dict written by :func:`save_features` (tensors only; never runs code from the file)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ReplearnError(f"cannot load features from {path}: {exc}; re-extract them") from None
