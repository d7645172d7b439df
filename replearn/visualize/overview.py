"""The run page's two opening sections: "At a glance" (every layer's strongest units) and "Overview" (embeddings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from replearn.visualize.layers import save_figure
from replearn.visualize.page import PageFigure, PageSection
from replearn.viz import plot_embeddings_by_layer
from replearn.viz.summary import SummaryRow, plot_summary


def glance_section(rows: Sequence[SummaryRow], out: Path) -> PageSection:
    """The opening figure: for each layer, first to last, its strongest working units."""
    n_show = len(rows[0].labels)
    fig = plot_summary(rows, title="Each layer's strongest units, first layer to last")
    return PageSection("At a glance", "", [PageFigure(
        save_figure(fig, out / "summary.png"),
        f"For each layer (top to bottom), its {n_show} most responsive {'units' if n_show > 1 else 'unit'} that are "
        f"not dead and whose act-max worked: the {rows[0].examples.shape[1]} test examples that drive each one "
        "hardest (conv layers: the window around the maximum, the receptive field bright), then its act-max image "
        "(orange frame). Labels: the unit and its dissection label (what it detects, see below) or, if it has "
        "none, its largest test activation.")])


def overview_section(points: Mapping[str, np.ndarray], labels: torch.Tensor, classes: Sequence[str], method: str,
                     out: Path) -> PageSection:
    """One 2-D embedding panel for the input and each selected layer, the same test images coloured by class."""
    fig = plot_embeddings_by_layer(points, labels, classes=classes,
                                   title=f"{method.upper()} of test representations, layer by layer")
    return PageSection("Overview", "Class structure from the pixels to the logits.", [
        PageFigure(save_figure(fig, out / "embedding_overview.png"),
                   f"{method.upper()} of the same {len(labels)} test images at the input and at every "
                   "selected layer, coloured by class.")])
