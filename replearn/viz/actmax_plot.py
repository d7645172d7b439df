"""Activation-maximization images: the input each unit responds to most (found by gradient ascent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from replearn.errors import ReplearnError
from replearn.viz.grid import as_images, image_grid, rescale_each, short_number

FAILED_CONTRAST = 0.2  # failed act-max images keep a fifth of their contrast


def plot_actmax(
    images: torch.Tensor,
    *,
    units: Sequence[int] | None = None,
    unit_names: Sequence[str] | None = None,
    objective: torch.Tensor | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Optimized inputs ``(U, 1, H, W)``, one per unit, each stretched to its own grey range.

    Each image is scaled on its own because units reach their optimum at very different input
    norms; ``objective`` (U,) adds the final activation to the label, and marks images whose
    final activation is <= 0 as failed (faded, labelled "failed").
    """
    if images.dim() != 4:
        raise ReplearnError(f"expected act-max images of shape (U, 1, H, W), got {tuple(images.shape)}")
    u = len(images)
    index = list(range(u)) if units is None else list(units)
    if len(index) != u:
        raise ReplearnError(f"plot_actmax got {len(index)} unit indices for {u} images; pass one per image")
    names = list(unit_names) if unit_names is not None else [str(i) for i in index]
    arr = rescale_each(as_images(images))  # (U, H, W) in [0, 1]
    if objective is not None:
        names = [f"{name}: {short_number(float(v))}" for name, v in zip(names, objective)]
        # An ascent that ends at activation <= 0 never made the unit fire: its image is noise, not a
        # preference, so it is faded towards grey and labelled instead of drawn at full contrast.
        for i, v in enumerate(objective):
            if float(v) <= 0:
                arr[i] = 0.5 + FAILED_CONTRAST * (arr[i] - 0.5)
                names[i] = f"{names[i].split(':')[0]}: failed"
    return image_grid(arr, labels=names, limits=(0.0, 1.0), title=title,
                      cell_inches=0.8 if objective is not None else 0.65, ax=ax)


def plot_prior_comparison(
    prototypes: Mapping[str, torch.Tensor],
    *,
    class_names: Sequence[str] | None = None,
    row_notes: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Class prototypes per prior: one row per prior (pixels in [0, 1], (C, 1, H, W) each), one column per class.

    All images share the 0..1 grey scale, so a washed-out or saturated prototype shows as such;
    ``row_notes`` adds a short score under each prior's name.
    """
    if not prototypes:
        raise ReplearnError("plot_prior_comparison got no prototypes; pass {prior name: (C, 1, H, W) images}")
    shapes = {tuple(t.shape) for t in prototypes.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4:
        raise ReplearnError(f"every prior needs prototypes of one shape (C, 1, H, W), got {sorted(shapes)}")
    n_rows, n_cols = len(prototypes), next(iter(shapes))[0]
    names = list(class_names) if class_names is not None else [str(c) for c in range(n_cols)]
    fig = Figure(figsize=(0.75 * n_cols + 1.6, 0.8 * n_rows + 0.5), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (prior, images) in enumerate(prototypes.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(images[c, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(names[c] if c < len(names) else str(c), fontsize=8)
        note = (row_notes or {}).get(prior, "")
        axes[r, 0].set_ylabel(prior + (f"\n{note}" if note else ""), fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
