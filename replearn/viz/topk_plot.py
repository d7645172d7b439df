"""Top-k dataset examples per unit (the Zeiler & Fergus view)."""

from __future__ import annotations

from typing import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from replearn.errors import ReplearnError
from replearn.viz.grid import block_grid, short_number


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
    h = examples.shape[-1]
    return block_grid(examples, block_labels=names, scale="shared", title=title,
                      cell_inches=0.3 if h >= 20 else 0.22, ax=ax)
