"""The two labellings of the same shapes images: objects ("parts") and the stroke-statistics twin ("strokes").

- ``parts``: the object class (CLASSES), which only the arrangement of parts tells apart.
- ``strokes``: the negative control, 2 classes. A rule on the level-1 pixel counts alone: does
  horizontal or vertical stroke ink dominate (ties: horizontal)? Counting oriented ink needs no
  parts. The generator balances it within every object class (so it says nothing about the
  object) and adds a short stroke wherever the two counts come within 6 px, so no label rests
  on a near tie. (The diagonals are left out: roofs, arrow heads and diamonds are mirror
  symmetric, so "/" against "\\" ties in many images.)
"""

from __future__ import annotations

import numpy as np
import torch

from replearn.errors import ReplearnError
from replearn.shapes.objects import CLASSES

LABELS = ("parts", "strokes")
STROKE_CLASSES = ("more_horizontal", "more_vertical")


def check_labels(labels: str) -> None:
    if labels not in LABELS:
        raise ReplearnError(f"labels={labels!r} is invalid: choose one of {', '.join(LABELS)} "
                            "(parts = the object; strokes = the stroke-orientation twin)")


def class_names(labels: str) -> list[str]:
    """The class names of a labelling (index = label)."""
    check_labels(labels)
    return list(CLASSES if labels == "parts" else STROKE_CLASSES)


def stroke_labels(ink: torch.Tensor | np.ndarray) -> torch.Tensor:
    """int64 (N,) twin labels from level-1 pixel counts (N, 4) in ORIENTATIONS order (H, /, V, \\)."""
    ink = torch.as_tensor(ink)
    return (ink[:, 2] > ink[:, 0]).long()
