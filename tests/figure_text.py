"""Where a figure's text lands once drawn: overlapping labels and text cut off at the figure's edge.

Measured with the renderer's bounding boxes (window extents), so a test fails on clipped or colliding
text without anyone looking at the PNG.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.transforms import Bbox


def _drawn(fig: Figure):
    renderer = fig._get_renderer()
    fig.draw(renderer)  # constrained layout and aspect are applied by a draw
    return renderer


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """(text, window extent) of the figure's own texts and every axes' titles, texts and legend entries."""
    renderer = _drawn(fig)
    texts = list(fig.texts)
    for legend in fig.legends:
        texts += legend.texts
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().texts
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts
            if t.get_visible() and t.get_text().strip()]


def overlapping(boxes: list[tuple[str, Bbox]], tolerance: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes share more than ``tolerance`` pixels in both directions."""
    pairs = []
    for i, (a, box) in enumerate(boxes):
        for b, other in boxes[i + 1:]:
            if (min(box.x1, other.x1) - max(box.x0, other.x0) > tolerance
                    and min(box.y1, other.y1) - max(box.y0, other.y0) > tolerance):
                pairs.append((a, b))
    return pairs


def outside_figure(fig: Figure, tolerance: float = 1.0) -> list[str]:
    """Texts (and axes decorations: tick labels, axis labels, titles) that reach past the figure's edge."""
    renderer = _drawn(fig)
    canvas = fig.bbox

    def cut(box: Bbox) -> bool:
        return (box.x0 < canvas.x0 - tolerance or box.y0 < canvas.y0 - tolerance
                or box.x1 > canvas.x1 + tolerance or box.y1 > canvas.y1 + tolerance)

    bad = [f"text {text!r}" for text, box in text_boxes(fig) if cut(box)]
    for i, ax in enumerate(fig.axes):
        if ax.get_visible() and cut(ax.get_tightbbox(renderer)):
            bad.append(f"axes {i} ({ax.get_title() or ax.get_label()!r}) with its labels")
    return bad
