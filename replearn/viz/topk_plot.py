"""Top-k dataset examples per unit (the Zeiler & Fergus view)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from replearn.errors import ReplearnError
from replearn.viz.grid import block_grid, short_number

FAINT = 0.3  # context outside the receptive field keeps this fraction of its brightness


def plot_top_k(
    examples: torch.Tensor,
    *,
    units: Sequence[int] | None = None,
    values: torch.Tensor | None = None,
    unit_names: Sequence[str] | None = None,
    dead: Sequence[bool] | torch.Tensor | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The k examples ``(U, k, 1, h, w)`` that most activate each of U units, one block per unit.

    Blocks read left-to-right, top-to-bottom in decreasing activation; the label above a block is
    the unit index (or ``unit_names``) and, with ``values`` (U, k), its largest activation.
    Pixels share one grey scale, so crops keep their true contrast. Units flagged in ``dead`` (U,)
    have no "top" examples (every image ties at 0), so their block is left empty and labelled dead.
    """
    if examples.dim() not in (4, 5):
        raise ReplearnError(f"expected top-k examples of shape (U, k, [1,] h, w), got {tuple(examples.shape)}")
    u = examples.shape[0]
    index = list(range(u)) if units is None else list(units)
    if len(index) != u:
        raise ReplearnError(f"plot_top_k got {len(index)} unit indices for {u} units; pass one per unit")
    names = list(unit_names) if unit_names is not None else [str(i) for i in index]
    if values is not None:
        names = [f"{name}: {short_number(float(v))}" for name, v in zip(names, values[:, 0])]
    examples = examples.detach().float().cpu()
    if dead is not None:
        flags = [bool(d) for d in dead]
        if len(flags) != u:
            raise ReplearnError(f"plot_top_k got {len(flags)} dead flags for {u} units; pass one per unit")
        examples = examples.clone()
        for i, is_dead in enumerate(flags):
            if is_dead:
                examples[i] = float("nan")  # drawn as the empty-cell colour, not as arbitrary tied images
                names[i] = f"{names[i].split(':')[0]}: dead"
    return block_grid(examples, block_labels=names, scale="shared", title=title,
                      cell_inches=0.45, ax=ax)


def context_crops(
    images: torch.Tensor, indices: torch.Tensor, boxes: torch.Tensor, side: int, faint: float = FAINT
) -> torch.Tensor:
    """``side``-pixel windows ``(U, k, 1, side, side)`` centred on each top example's receptive field.

    ``images`` (N, 1, H, W); ``indices`` (U, k) into them; ``boxes`` (U, k, 4) = (top, left, bottom,
    right), bottom/right exclusive. Pixels inside the box keep their value, the digit around it is
    kept at ``faint`` brightness so a 3x3 field is seen in its stroke, and beyond the image is 0.
    """
    if images.dim() != 4 or boxes.shape != (*indices.shape, 4):
        raise ReplearnError(f"context_crops needs images (N, 1, H, W), indices (U, k) and boxes (U, k, 4); got "
                            f"{tuple(images.shape)}, {tuple(indices.shape)}, {tuple(boxes.shape)}")
    u, k = indices.shape
    _, c, height, width = images.shape
    out = torch.zeros(u, k, c, side, side)
    for i in range(u):
        for j in range(k):
            top, left, bottom, right = (int(v) for v in boxes[i, j])
            weight = torch.full((c, height, width), float(faint))
            weight[:, top:bottom, left:right] = 1.0  # the receptive field at full contrast
            image = images[int(indices[i, j])].float() * weight  # (1, H, W)
            y0 = (top + bottom) // 2 - side // 2
            x0 = (left + right) // 2 - side // 2
            ys, xs = max(y0, 0), max(x0, 0)
            ye, xe = min(y0 + side, height), min(x0 + side, width)
            out[i, j, :, ys - y0:ye - y0, xs - x0:xe - x0] = image[:, ys:ye, xs:xe]
    return out
