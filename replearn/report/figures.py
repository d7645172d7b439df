"""Depth-report figures built from the analysed cells: per-layer profiles of every network, dissection level
fractions, within-model CKA, and the level-2 profiles behind the middle-stage verdict."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from replearn.report.layers import GROUPS, METRIC_BY_KEY, Cell, Metric
from replearn.report.middle import LEVEL2
from replearn.report.page import VERDICTS_TITLE
from replearn.report.plots import grid_figure, plot_cka_heatmap, plot_layer_profiles, plot_level_fractions
from replearn.report.stats import nanmean

DISSECTION = GROUPS["dissection"]
SIMILARITY = "Representation similarity"
# Short y labels (a metric's full label is cut off at the figure's height).
LEVEL2_AXES = {"dissect_iou_vs_ceiling_l2": "level-2 best IoU / ceiling", "concept_probe_l2": "level-2 concept probe R²",
               "dissect_fraction_l2": "fraction labelled level 2\n(after the null)"}
LINES = ("solid: trained; dashed: random init; dash-dot: trained on shuffled labels (where the runs have it)")


def save(fig, path: Path) -> str:
    fig.savefig(path)
    return path.name


def profile(cells: list[Cell], block: str, metric: Metric | str) -> dict[int, tuple[list[float], list[float]]]:
    """Per depth: (relative positions, per-layer values averaged over seeds)."""
    out = {}
    for cell in cells:
        series = cell.series(metric, block)
        if series:
            out[cell.depth] = (cell.position, nanmean(list(series.values())))
    return out


def profiles_panel(ax, cells: list[Cell], metric: Metric | str, ylabel: str, title: str, log: bool = False,
                   floor: str | None = None) -> None:
    """One panel: the metric per layer for the trained network and both controls (and a floor), one line per depth."""
    plot_layer_profiles(profile(cells, "trained", metric), profile(cells, "random_init", metric), ylabel=ylabel,
                        title=title, log=log, ax=ax, floors=profile(cells, "trained", floor) if floor else None,
                        shuffled=profile(cells, "shuffled_labels", metric))


def _seed_mean(cell: Cell, key: str, block: str) -> list[float]:
    series = cell.series(key, block)
    return nanmean(list(series.values())) if series else [math.nan] * len(cell.layers)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _panel_grid(count: int, rows_per: int, width: float, height: float, max_cols: int = 4):
    """A figure with ``count`` panels of ``rows_per`` stacked axes each, wrapped ``max_cols`` panels per row."""
    cols = min(max_cols, count)
    grid_rows = math.ceil(count / cols)
    fig, axes = grid_figure(grid_rows * rows_per, cols, width=width, height=height)
    for k in range(count, grid_rows * cols):  # unused panels of the last row
        for r in range(rows_per):
            axes[(k // cols) * rows_per + r, k % cols].axis("off")
    return fig, [[axes[(k // cols) * rows_per + r, k % cols] for r in range(rows_per)] for k in range(count)]


LEVEL_KEYS = {"l1": "dissect_fraction_l1", "l2": "dissect_fraction_l2", "l3": "dissect_fraction_l3",
              "unlabelled": "dissect_fraction_unlabelled"}


def dissection_figures(cells_of: dict[str, list[Cell]], out: Path) -> list[tuple[str, str, str]]:
    """Per variant: stacked level fractions per layer, trained vs both controls, one panel per depth."""
    figures = []
    for variant, cells in cells_of.items():
        cells = [c for c in cells if c.series(LEVEL_KEYS["l1"])]
        if not cells:
            continue
        fig, panels = _panel_grid(len(cells), 1, width=5.2, height=3.3, max_cols=3)
        for (ax,), cell in zip(panels, cells):
            # Layers with no dissection value (the input; the head of newer runs, labelled by its class) get no bar.
            trained = {key: _seed_mean(cell, key, "trained") for key in LEVEL_KEYS.values()}
            shown = [i for i, name in enumerate(cell.layers)
                     if name != "input" and not all(math.isnan(v[i]) for v in trained.values())]
            means = {block: {k: [_seed_mean(cell, key, block)[i] for i in shown] for k, key in LEVEL_KEYS.items()}
                     if cell.series(LEVEL_KEYS["l1"], block) else None
                     for block in ("trained", "random_init", "shuffled_labels")}
            methods = next(iter(cell.series_raw("dissect_method").values()), [None] * len(cell.layers))
            labels = [cell.layers[i] + ("\n(grad×input)" if methods[i] == "grad_x_input" else "") for i in shown]
            plot_level_fractions(labels, means["trained"], means["random_init"], shuffled=means["shuffled_labels"],
                                 title=f"{variant}, depth {cell.depth} ({len(cell.seeds)} seeds)", ax=ax, note=False,
                                 legend=cell is cells[0])
        figures.append((DISSECTION, save(fig, out / f"dissection_levels_{slug(variant)}.png"),
                        f"{variant}: fraction of each layer's units labelled with a level-1 (edges & strokes), level-2 "
                        "(parts & shapes) or level-3 (digit) concept after the within-image null, or unlabelled, "
                        "averaged over seeds; per layer, the left solid bar is the trained network, then its "
                        "random-init control (hatched) and, where the runs have it, the shuffled-label network "
                        "(cross-hatched). Layers marked (grad×input) have no spatial map (MLP units): their units "
                        "are dissected through the gradient × input map, a proxy for where in the image the unit's "
                        "evidence lies. The logits are labelled by their class, not dissected."))
    return figures


def level2_figure(cells_of: dict[str, list[Cell]], out: Path) -> list[tuple[str, str, str]]:
    """The level-2 measures per layer (rows) per variant (columns): what the middle-stage verdict is computed from."""
    keys = [k for k in LEVEL2 if any(c.series(k) for cells in cells_of.values() for c in cells)]
    if not keys or not cells_of:
        return []
    fig, axes = grid_figure(len(keys), len(cells_of))
    for row, key in enumerate(keys):
        for col, (variant, cells) in enumerate(cells_of.items()):
            profiles_panel(axes[row, col], cells, METRIC_BY_KEY[key], ylabel=LEVEL2_AXES[key], title=variant)
    return [(VERDICTS_TITLE, save(fig, out / "level2_profiles.png"),
             f"The level-2 (parts & shapes) measures per layer vs relative position, averaged over seeds ({LINES}). "
             "The middle-stage prediction needs the largest value inside the network, not at the first or last "
             "hidden layer, and more so than in either control.")]


def _cka_grid(analysis: dict, block: str, size: int) -> np.ndarray | None:
    """The block's layer × layer CKA grid, or None if it is absent or not size × size numbers."""
    data = analysis.get(block)
    try:
        grid = np.asarray(data["cka"], dtype=float)
    except (TypeError, KeyError, ValueError):
        return None
    return grid if grid.shape == (size, size) else None


def within_cka(cells_of: dict[str, list[Cell]], out: Path) -> list[tuple[str, str, str]]:
    """Per variant: within-model CKA averaged over seeds; per depth the trained grid above its controls' grids."""
    figures = []
    for variant, cells in cells_of.items():
        if not cells:
            continue
        blocks = [("trained", "trained"), ("random_init", "random init")]
        if any(_cka_grid(a, "shuffled_labels", len(c.layers)) is not None for c in cells for a in c.analyses.values()):
            blocks.append(("shuffled_labels", "shuffled labels"))
        fig, panels = _panel_grid(len(cells), len(blocks), width=3.4, height=3.0)
        for axes, cell in zip(panels, cells):
            for ax, (block, name) in zip(axes, blocks):
                grids = [g for g in (_cka_grid(a, block, len(cell.layers)) for a in cell.analyses.values())
                         if g is not None]
                if not grids:
                    ax.set_title(f"depth {cell.depth} {name}: no CKA", fontsize=8)
                    ax.axis("off")
                    continue
                plot_cka_heatmap(np.nanmean(np.stack(grids), axis=0), cell.layers,
                                 title=f"{variant}, depth {cell.depth}, {name} ({len(grids)} seeds)", ax=ax)
        figures.append((SIMILARITY, save(fig, out / f"cka_within_{slug(variant)}.png"),
                        f"{variant}: linear CKA between every pair of layers within one model (input … logits), "
                        "averaged over seeds; for each depth the trained network is on top, the same architecture "
                        "at random init below it (and the network trained on shuffled labels below that, where the "
                        "runs have it), so structure that is there without the labels shows in all."))
    return figures
