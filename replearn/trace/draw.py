"""Draw a traced network: every node with its value, every edge with its weight."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Circle

from replearn.trace.network import NetworkTrace, fmt


def _positions(count: int) -> list[float]:
    """Vertical positions of ``count`` nodes, centred on 0."""
    return [(count - 1) / 2 - i for i in range(count)]


def draw_network(trace: NetworkTrace, ax=None, label_edges: bool | None = None) -> Figure:
    """Inputs at the left, one column per layer; node text = weighted sum and activation output."""
    columns = [list(trace.inputs)] + [layer.outputs for layer in trace.layers]
    if ax is None:
        fig = Figure(figsize=(2.4 * len(columns) + 1, 1.3 * max(len(c) for c in columns) + 1.6), dpi=110)
        ax = fig.add_subplot()
    fig = ax.figure
    edges = sum(len(a) * len(b) for a, b in zip(columns, columns[1:]))
    label_edges = edges <= 40 if label_edges is None else label_edges
    max_weight = max((abs(w) for layer in trace.layers for node in layer.nodes for w in node.weights), default=1) or 1
    ys = [_positions(len(column)) for column in columns]
    radius = 0.3
    dx = 2.2  # horizontal spacing between layers leaves room for weight labels
    for c, layer in enumerate(trace.layers, start=1):
        for n, node in enumerate(layer.nodes):
            for p, weight in enumerate(node.weights):
                x0, y0, x1, y1 = (c - 1) * dx, ys[c - 1][p], c * dx, ys[c][n]
                color = "tab:blue" if weight >= 0 else "tab:red"
                ax.plot([x0 + radius, x1 - radius], [y0, y1], color=color, alpha=0.55,
                        linewidth=0.6 + 2.4 * abs(weight) / max_weight, zorder=1)
                if label_edges:
                    # Label near the target end so labels of edges into one node don't overlap.
                    t = 0.72
                    ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), fmt(weight),
                            fontsize=8, color=color, ha="center", va="center", zorder=3,
                            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    for c, column in enumerate(columns):
        for n, value in enumerate(column):
            y = ys[c][n]
            inactive = c > 0 and trace.layers[c - 1].activation == "relu" and value == 0
            ax.add_patch(Circle((c * dx, y), radius, facecolor="#eeeeee" if inactive else "#fff3c4",
                                edgecolor="black", zorder=2))
            ax.text(c * dx, y, fmt(value), ha="center", va="center", fontsize=11, fontweight="bold", zorder=4)
            if c > 0:
                node = trace.layers[c - 1].nodes[n]
                ax.text(c * dx, y - radius - 0.08, f"Σ = {fmt(node.weighted_sum)}", ha="center", va="top",
                        fontsize=8, color="dimgray", zorder=4)
    names = ["inputs"] + [f"{layer.name}\n({layer.activation})" for layer in trace.layers]
    top = max(max(y) for y in ys) + 0.8
    for c, name in enumerate(names):
        ax.text(c * dx, top, name, ha="center", va="bottom", fontsize=10)
    ax.set_xlim(-0.6, (len(columns) - 1) * dx + 0.6)
    ax.set_ylim(min(min(y) for y in ys) - 0.9, top + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Forward propagation: weighted sum (Σ) then activation at every node", fontsize=10)
    return fig
