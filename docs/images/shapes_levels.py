"""Draws docs/images/shapes_levels.png: four generated shapes-world images and their exact masks at each level.

    python docs/images/shapes_levels.py
"""

from pathlib import Path

from replearn.shapes import generate
from replearn.viz.shapes_plot import plot_concept_levels

OUT = Path(__file__).with_name("shapes_levels.png")


def main() -> None:
    images, _, masks = generate(16, seed=0)
    plot_concept_levels(images, masks, [0, 1, 2, 3]).savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
