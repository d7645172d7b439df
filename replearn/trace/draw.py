"""Draw a traced network: every node with its value and bias, every edge with its weight, and a legend."""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from matplotlib.transforms import Bbox

from replearn.trace.network import LayerTrace, NetworkTrace, NodeTrace, fmt

RADIUS = 0.3
DX = 2.2  # horizontal spacing between layers leaves room for weight labels
# Where along an edge (0 = source, 1 = target) a weight label may sit, in order of preference:
# near the target first, since that is the node whose sum the weight feeds.
LABEL_STOPS = (0.72, 0.6, 0.82, 0.5, 0.4, 0.3, 0.66, 0.55, 0.45, 0.35, 0.25)
POSITIVE, NEGATIVE, BIAS = "tab:blue", "tab:red", "tab:purple"
# A readable drawing: at most this many nodes per column and columns (inputs + layers); the rest is left out,
# with a note (every node stays in the text trace). 100,000 nodes once took minutes to draw, unreadably.
MAX_COLUMN_NODES = 16
MAX_COLUMNS = 10


def readable_part(trace: NetworkTrace) -> tuple[NetworkTrace, str | None]:
    """The part of ``trace`` that is drawn (the first nodes of the first columns) and a note on what is left out.

    Kept nodes keep their true weighted sums and outputs (from every input); only the edges from left-out
    nodes are not drawn. The note is None when everything fits.
    """
    sizes = [len(trace.inputs)] + [len(layer.nodes) for layer in trace.layers]
    if len(sizes) <= MAX_COLUMNS and max(sizes) <= MAX_COLUMN_NODES:
        return trace, None
    width = min(len(trace.inputs), MAX_COLUMN_NODES)
    layers = []
    for layer in trace.layers[:MAX_COLUMNS - 1]:
        nodes = [NodeTrace(node.inputs[:width], node.weights[:width], node.bias, node.weighted_sum, node.output)
                 for node in layer.nodes[:MAX_COLUMN_NODES]]
        layers.append(LayerTrace(layer.name, layer.activation, nodes))
        width = len(nodes)
    part = NetworkTrace(list(trace.inputs[:MAX_COLUMN_NODES]), layers)
    shown = min(len(trace.inputs), MAX_COLUMN_NODES) + sum(len(layer.nodes) for layer in layers)
    left_out = [f"at most {MAX_COLUMN_NODES} nodes per column"] if max(sizes) > MAX_COLUMN_NODES else []
    if len(sizes) > MAX_COLUMNS:
        left_out.append(f"the first {MAX_COLUMNS - 1} of {len(trace.layers)} layers")
    note = (f"Drawn: {shown:,} of {sum(sizes):,} nodes ({', '.join(left_out)}); each drawn sum still counts every "
            "input. Every node is in the text trace.")
    return part, note


def _positions(count: int) -> list[float]:
    """Vertical positions of ``count`` nodes, centred on 0."""
    return [(count - 1) / 2 - i for i in range(count)]


def _overlap(box: Bbox, taken: list[Bbox]) -> float:
    """Total area ``box`` shares with the boxes already placed."""
    total = 0.0
    for other in taken:
        w = min(box.x1, other.x1) - max(box.x0, other.x0)
        h = min(box.y1, other.y1) - max(box.y0, other.y0)
        if w > 0 and h > 0:
            total += w * h
    return total


def draw_network(trace: NetworkTrace, ax=None, label_edges: bool | None = None) -> Figure:
    """Inputs at the left, one column per layer; node text = activation output, Σ (with bias) below, bias above.

    A network too big to read is drawn in part (:func:`readable_part`), with a note in the title.

    Weight labels are placed along their edge where they overlap no other text or node (measured with
    the renderer's text boxes); a legend explains colours, widths and the grey (ReLU-silenced) nodes.
    """
    trace, note = readable_part(trace)
    columns = [list(trace.inputs)] + [layer.outputs for layer in trace.layers]
    if ax is None:
        fig = Figure(figsize=(2.4 * len(columns) + 1, 1.3 * max(len(c) for c in columns) + 2.2), dpi=110)
        ax = fig.add_subplot()
    fig = ax.figure
    edges = sum(len(a) * len(b) for a, b in zip(columns, columns[1:]))
    label_edges = edges <= 40 if label_edges is None else label_edges
    max_weight = max((abs(w) for layer in trace.layers for node in layer.nodes for w in node.weights), default=1) or 1
    ys = [_positions(len(column)) for column in columns]
    top = max(max(y) for y in ys) + 0.8
    # Limits and aspect first: label placement below measures text in final display coordinates.
    ax.set_xlim(-0.6, (len(columns) - 1) * DX + 0.6)
    ax.set_ylim(min(min(y) for y in ys) - 1.9, top + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    title = "Forward propagation: weighted sum (Σ) plus bias, then activation, at every node"
    if note is not None:
        title += "\n" + textwrap.fill(note, width=max(60, int(16 * (2.4 * len(columns) + 1))))
    ax.set_title(title, fontsize=10)

    for c, column in enumerate(columns):
        for n, value in enumerate(column):
            y = ys[c][n]
            inactive = c > 0 and trace.layers[c - 1].activation == "relu" and value == 0
            ax.add_patch(Circle((c * DX, y), RADIUS, facecolor="#eeeeee" if inactive else "#fff3c4",
                                edgecolor="black", zorder=2))
            ax.text(c * DX, y, fmt(value), ha="center", va="center", fontsize=11, fontweight="bold", zorder=4)
            if c > 0:
                node = trace.layers[c - 1].nodes[n]
                total = f"Σ = {fmt(node.weighted_sum)}"
                if node.bias:
                    # The sum spelled out: inputs·weights, then the bias, so the bias's share is visible.
                    sign = "+" if node.bias >= 0 else "−"
                    total = (f"Σ = {fmt(node.weighted_sum - node.bias)} {sign} {fmt(abs(node.bias))}"
                             f" = {fmt(node.weighted_sum)}")
                    ax.text(c * DX - RADIUS * 0.75, y + RADIUS * 0.75, f"b = {fmt(node.bias)}", ha="right",
                            va="bottom", fontsize=8, color=BIAS, fontweight="bold", zorder=4,
                            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
                ax.text(c * DX, y - RADIUS - 0.06, total, ha="center", va="top", fontsize=8, color="dimgray",
                        zorder=4)
    names = ["inputs"] + [f"{layer.name}\n({layer.activation})" for layer in trace.layers]
    for c, name in enumerate(names):
        ax.text(c * DX, top, name, ha="center", va="bottom", fontsize=10)

    ax.apply_aspect()
    renderer = fig._get_renderer()
    taken = [t.get_window_extent(renderer).expanded(1.1, 1.15) for t in ax.texts]
    taken += [p.get_window_extent(renderer) for p in ax.patches]
    for c, layer in enumerate(trace.layers, start=1):
        for n, node in enumerate(layer.nodes):
            for p, weight in enumerate(node.weights):
                x0, y0, x1, y1 = (c - 1) * DX + RADIUS, ys[c - 1][p], c * DX - RADIUS, ys[c][n]
                color = POSITIVE if weight >= 0 else NEGATIVE
                ax.plot([x0, x1], [y0, y1], color=color, alpha=0.55,
                        linewidth=0.6 + 2.4 * abs(weight) / max_weight, zorder=1)
                if label_edges:
                    _place_label(ax, renderer, taken, (x0, y0, x1, y1), fmt(weight), color)
    ax.legend(handles=[
        Line2D([], [], color=POSITIVE, linewidth=2, label="positive weight"),
        Line2D([], [], color=NEGATIVE, linewidth=2, label="negative weight (width ∝ |weight|)"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="#eeeeee", markeredgecolor="black",
               markersize=9, label="ReLU output 0 (silent)"),
        Line2D([], [], marker="$b$", linestyle="", color=BIAS, markersize=8, label="bias, added into Σ"),
    ], loc="lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def _place_label(ax, renderer, taken: list[Bbox], edge: tuple[float, float, float, float], text: str,
                 color: str) -> None:
    """Put ``text`` on the edge at the first stop where it overlaps nothing placed yet (else the least overlap)."""
    x0, y0, x1, y1 = edge
    label = ax.text(0, 0, text, fontsize=8, color=color, ha="center", va="center", zorder=3,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    best = None
    for t in LABEL_STOPS:
        label.set_position((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
        box = label.get_window_extent(renderer).expanded(1.15, 1.35)  # the white box pads the text
        cost = _overlap(box, taken)
        if best is None or cost < best[0]:
            best = (cost, label.get_position(), box)
        if cost == 0:
            break
    label.set_position(best[1])
    taken.append(best[2])
