"""Depth-report figures. Each takes plain data (lists, dicts, tensors), an optional ax, and returns a Figure."""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Dissection levels: colour per level, in stacking order (bottom to top).
LEVEL_STYLE = [
    ("l1", "level 1: edges & strokes", "#4c72b0"),
    ("l2", "level 2: parts & shapes", "#dd8452"),
    ("l3", "level 3: objects (digits)", "#55a868"),
    ("unlabelled", "unlabelled", "#d9d9d9"),
]


def _axes(ax, figsize=(6, 4)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def depth_colors(depths: list[int]) -> dict[int, tuple]:
    cmap = colormaps["viridis"]
    ordered = sorted(set(depths))
    return {d: cmap(i / max(len(ordered) - 1, 1)) for i, d in enumerate(ordered)}


def plot_accuracy_vs_depth(series: dict[str, dict[int, tuple[float, float]]], ax=None) -> Figure:
    """Test accuracy (mean ± 95% CI over seeds) vs depth, one line per variant. series[variant][depth] = (mean, ci)."""
    fig, ax = _axes(ax)
    for variant, points in sorted(series.items()):
        depths = sorted(points)
        means = [100 * points[d][0] for d in depths]
        cis = [100 * points[d][1] if not math.isnan(points[d][1]) else 0 for d in depths]
        ax.errorbar(depths, means, yerr=cis, marker="o", capsize=3, label=variant)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({d for p in series.values() for d in p}))
    ax.set_xticklabels([str(d) for d in sorted({d for p in series.values() for d in p})])
    ax.set_xlabel("depth (hidden layers)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy vs depth (mean ± 95% CI over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_curves_by_depth(curves: dict[int, list[float]], title: str = "", ax=None) -> Figure:
    """Validation accuracy per epoch, one line per depth. curves[depth] = [acc per epoch]."""
    fig, ax = _axes(ax)
    colors = depth_colors(list(curves))
    for depth in sorted(curves):
        acc = curves[depth]
        ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], "o-", color=colors[depth], label=f"depth {depth}")
    # Epochs are whole numbers: tick each one when there are few (a locator alone falls back to
    # fractions when the axis spans a single epoch).
    epochs = max((len(acc) for acc in curves.values()), default=0)
    if 0 < epochs <= 15:
        ax.set_xticks(range(1, epochs + 1))
        ax.set_xlim(0.5, epochs + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_layer_profiles(profiles: dict[int, tuple[list[float], list[float]]],
                        controls: dict[int, tuple[list[float], list[float]]] | None = None,
                        ylabel: str = "", title: str = "", log: bool = False, ax=None,
                        floors: dict[int, tuple[list[float], list[float]]] | None = None,
                        shuffled: dict[int, tuple[list[float], list[float]]] | None = None) -> Figure:
    """A per-layer measure vs relative layer position (0 = input, 1 = logits), one line per depth.

    profiles[depth] = (positions, values); controls (random-init network) are drawn dashed, shuffled (the network
    trained on shuffled labels) dash-dot, floors (shuffled-label chance level of a probe) dotted.
    """
    fig, ax = _axes(ax)
    colors = depth_colors(list(profiles))
    for depth in sorted(profiles):
        x, y = profiles[depth]
        ax.plot(x, y, "o-", ms=3, color=colors[depth], label=f"depth {depth}")
        if controls and depth in controls:
            cx, cy = controls[depth]
            ax.plot(cx, cy, "--", color=colors[depth], alpha=0.6, linewidth=1)
        if shuffled and depth in shuffled:
            sx, sy = shuffled[depth]
            ax.plot(sx, sy, "-.", color=colors[depth], alpha=0.6, linewidth=1)
        if floors and depth in floors:
            fx, fy = floors[depth]
            ax.plot(fx, fy, ":", color=colors[depth], alpha=0.8, linewidth=1)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("relative layer position (0 = input, 1 = logits)")
    ax.set_ylabel(ylabel)
    notes = ((["dashed: random init"] if controls else []) + (["dash-dot: shuffled labels"] if shuffled else [])
             + (["dotted: shuffled-label floor"] if floors else []))
    # Two notes per line: three side by side run past a panel's width.
    lines = ["; ".join(notes[k:k + 2]) for k in range(0, len(notes), 2)]
    ax.set_title(title + ("\n(" + "\n".join(lines) + ")" if notes else ""), fontsize=9)
    ax.grid(alpha=0.3)
    if profiles:
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no analysed runs", transform=ax.transAxes, ha="center", color="gray")
    return fig


def plot_cka_heatmap(matrix, row_labels: list[str], col_labels: list[str] | None = None, title: str = "",
                     ax=None) -> Figure:
    """A CKA grid (values in [0, 1])."""
    fig, ax = _axes(ax, figsize=(5, 4.4))
    matrix = np.asarray(matrix, dtype=float)
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma", origin="lower")
    col_labels = col_labels or row_labels
    step_r, step_c = max(1, len(row_labels) // 10), max(1, len(col_labels) // 10)
    ax.set_yticks(range(0, len(row_labels), step_r), row_labels[::step_r], fontsize=7)
    ax.set_xticks(range(0, len(col_labels), step_c), col_labels[::step_c], fontsize=7, rotation=90)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="linear CKA")
    return fig


def plot_level_fractions(layers: list[str], trained: dict[str, list[float]], control: dict[str, list[float]] | None = None,
                         title: str = "", ax=None, legend: bool = True, note: bool = True,
                         shuffled: dict[str, list[float]] | None = None) -> Figure:
    """Stacked fractions of units per dissection level for each layer, one bar per network side by side: trained
    (solid), random-init control (hatched), network trained on shuffled labels (cross-hatched).

    trained[level][i] is the fraction at layers[i] for level in l1, l2, l3, unlabelled (nan: no data).
    """
    fig, ax = _axes(ax, figsize=(1 + 0.7 * len(layers), 3.4))
    x = np.arange(len(layers))
    networks = [(trained, {}), (control, {"hatch": "///", "alpha": 0.55, "edgecolor": "white"}),
                (shuffled, {"hatch": "xxx", "alpha": 0.4, "edgecolor": "white"})]
    networks = [(data, style) for data, style in networks if data]
    width = 0.8 / len(networks)
    for k, (data, style) in enumerate(networks):
        offset = (k - (len(networks) - 1) / 2) * width
        bottom = np.zeros(len(layers))
        for key, label, color in LEVEL_STYLE:
            values = np.nan_to_num(np.asarray(data.get(key, [math.nan] * len(layers)), dtype=float))
            ax.bar(x + offset, values, width=width * 0.95, bottom=bottom, color=color,
                   label=label if data is trained else None, **style)
            bottom += values
    ax.set_xticks(x, layers, rotation=60, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of units")
    order = ["solid: trained"] + ["hatched: random init"] * bool(control) + ["cross-hatched: shuffled labels"] * bool(shuffled)
    ax.set_title(title + (f"\n(left to right: {', '.join(order)})" if len(networks) > 1 and note else ""), fontsize=9)
    if legend:
        ax.legend(fontsize=7, loc="upper left")
    return fig


def grid_figure(rows: int, cols: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a rows x cols array of axes."""
    fig = Figure(figsize=(width * cols, height * rows), dpi=100, layout="constrained")
    return fig, np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
