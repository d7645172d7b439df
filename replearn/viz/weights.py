"""First-layer weights: what each first-layer unit or filter looks for in pixel space."""

from __future__ import annotations

import math

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from replearn.errors import ReplearnError
from replearn.viz.grid import image_grid


def first_layer_weights(model: nn.Module) -> torch.Tensor:
    """The first block's weights as images: MLP (U, 1, H, W); CNN (C_out, C_in, kh, kw)."""
    block = model.blocks[0]
    if hasattr(block, "conv"):
        return block.conv.weight.detach().cpu()
    if hasattr(block, "linear"):
        weight = block.linear.weight.detach().cpu()  # (U, C*H*W)
        shape = tuple(getattr(model, "input_shape", (1, 28, 28)))
        if weight.shape[1] != math.prod(shape):
            raise ReplearnError(f"first layer has {weight.shape[1]} inputs but input_shape is {shape}")
        return weight.reshape(len(weight), *shape)
    raise ReplearnError(f"cannot find first-layer weights in {type(block).__name__}; expected .conv or .linear")


def plot_first_layer(
    weights: torch.Tensor,
    *,
    units: list[int] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Weights (U, 1, h, w) as images on one colour scale centred at 0 (red +, blue -).

    Works for MLP hidden units (h = w = 28) and conv filters (h = w = kernel size).
    Multi-channel filters show their channel mean.
    """
    if weights.dim() != 4:
        raise ReplearnError(f"expected weights of shape (U, C, h, w), got {tuple(weights.shape)}")
    if weights.shape[1] != 1:
        weights = weights.mean(dim=1, keepdim=True)
    index = list(range(len(weights))) if units is None else list(units)
    chosen = weights[index]
    small = chosen.shape[-1] <= 7
    kind = "filter" if small else "unit"
    if title is None:
        title = f"first-layer {kind}s ({len(index)} of {len(weights)}): red > 0 > blue"
    return image_grid(
        chosen,
        labels=[str(u) for u in index],
        scale="symmetric",
        title=title,
        colorbar=True,
        cell_inches=0.45 if small else 0.7,
        ax=ax,
    )
