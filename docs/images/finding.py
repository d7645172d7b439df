"""Draws docs/images/finding.png from the sweep figures quoted in docs/findings.md.

Nothing here is measured: every number is copied from the text of the findings page
(depth-8 CNNs of `experiment=depth_cnn`, 2 epochs, 3 seeds). Layers the text gives no
figure for are left empty; a bound ("<= 6%") is drawn as a band, not a point.

    python docs/images/finding.py
"""

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

OUT = Path(__file__).with_name("finding.png")
LAYERS = [f"blocks.{i}" for i in range(8)]
TRAINED, CONTROL = "#1f5fa8", "#9a9a9a"


def fractions(ax: Axes) -> None:
    """Percent of units labelled per level in the depth-8 CNN, where the text quotes it."""
    x = range(len(LAYERS))
    ax.axhspan(0, 17, color="#e8c8a0", alpha=0.35, lw=0)
    ax.text(
        2.6,
        18.5,
        "parts & shapes: ≤ 17% in every layer,\nnever above random init",
        fontsize=7.5,
        color="#8a5a20",
        ha="center",
        va="bottom",
    )
    ax.fill_between([4.7, 7.3], 0, 6, color=CONTROL, alpha=0.35, lw=0)
    ax.text(7.35, 6, "digits at random\ninit: ≤ 6%", fontsize=7.5, color="#555", va="bottom", ha="right")
    ax.fill_between([4.7, 7.3], 0, 1, color="#c0392b", alpha=0.35, lw=0)
    ax.plot([5, 6, 7], [56, 71, 94], "o-", color=TRAINED, label="digits, trained")
    ax.plot([0], [82], "s", color="#c0392b", label="edges & strokes, trained")
    ax.plot([0], [76], "s", mfc="white", color="#c0392b", label="edges & strokes, random init")
    ax.annotate(
        "edges ≤ 1% from blocks.5 on, both",
        (6, 1),
        (3.6, 40),
        fontsize=7.5,
        arrowprops={"arrowstyle": "->", "color": "#c0392b", "lw": 0.8},
        color="#c0392b",
    )
    ax.set_xticks(list(x), LAYERS, rotation=35, ha="right", fontsize=8)
    ax.set(ylim=(0, 100), xlim=(-0.5, 7.5), ylabel="% of units labelled", title="depth-8 CNN: what the units detect")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(0.14, 1.0), frameon=False)


def centroids(ax: Axes) -> None:
    """Mean relative position of the units labelled at each level: trained and random init."""
    levels = ["edges", "parts", "digits"]
    for y, (trained, control) in enumerate(zip([0.36, 0.55, 0.76], [0.37, 0.56, 0.70], strict=True)):
        ax.plot([control, trained], [y, y], color="#ccc", lw=3, zorder=0)
        ax.plot(control, y, "o", mfc="white", color=CONTROL, ms=8, label="random init" if y == 0 else None)
        ax.plot(trained, y, "o", color=TRAINED, ms=8, label="trained" if y == 0 else None)
    ax.set_yticks(range(3), levels)
    ax.set(
        xlim=(0.2, 0.9),
        ylim=(-0.6, 2.9),
        xlabel="mean relative layer position of the labelled units",
        title="CNN sweep: same order at random init",
    )
    ax.legend(fontsize=7.5, loc="upper left", frameon=False, ncol=2)


def main() -> None:
    """Draw both panels and write finding.png next to this file."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.5, 1])
    fractions(left)
    centroids(right)
    fig.suptitle(
        "Drawn from the numbers quoted in findings.md: experiment=depth_cnn, MNIST, depths 1, 2, 3, 4, 6, 8, "
        "2 epochs, 3 seeds. Empty = no figure quoted.",
        fontsize=8,
        color="#555",
    )
    fig.savefig(OUT, dpi=110)


if __name__ == "__main__":
    main()
