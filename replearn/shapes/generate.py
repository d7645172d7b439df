"""``generate``: shapes-world images, their labels, and exact concept masks at three levels.

Each image holds one object (level 3) built from parts (level 2) built from strokes at
0/45/90/135 degrees (level 1), plus distractor parts; see :mod:`replearn.shapes.scenes`.
The generator knows which stroke every pixel comes from, so the masks are exact:

- level 1, ``stroke_<orientation>``: pixels where the strokes of that orientation alone
  are ink (together they are exactly the ink, pixel > INK_LEVEL);
- level 2, one mask per part type (``l_corner``, ``t_junction``, ``x_junction``,
  ``square``, ``triangle``, ``filled_square``): the strokes of every part of that type,
  in the object or among the distractors;
- level 3, ``class_<object>``: the object's own strokes (distractors excluded), only in
  the mask of the image's object class; the other class masks are empty.

Last, an image whose strokes-twin label (labels.py) misses its target is turned by 90
degrees as a whole; targets are balanced within every object class, so the twin carries
no information about the object, and both labellings share the same images.
"""

from __future__ import annotations

import numpy as np
import torch

from replearn.dissection.concepts import Concept, ConceptMasks, class_concept_name
from replearn.errors import ReplearnError
from replearn.shapes.draw import ORIENTATIONS, render
from replearn.shapes.labels import check_labels, stroke_labels
from replearn.shapes.layout import OBJECT_BIT, balanced_labels, scaled
from replearn.shapes.objects import CLASSES
from replearn.shapes.parts import PART_TYPES
from replearn.shapes.scenes import compose

BLOCK = 10_000  # images per independently seeded block: bounded memory, and more images keep the first blocks
MIN_SIZE, MAX_SIZE = 28, 224  # below 28 px the strokes would be thinner than 2 px


def concepts() -> list[Concept]:
    """The mask axis: 4 stroke orientations, the part types, one object mask per class."""
    return ([Concept(f"stroke_{o}", 1) for o in ORIENTATIONS] + [Concept(p, 2) for p in PART_TYPES]
            + [Concept(class_concept_name(c), 3) for c in CLASSES])


def check_arguments(n, seed, size) -> None:
    for name, value, low, high in (("n", n, 1, 10**8), ("seed", seed, 0, 2**63 - 1), ("size", size, MIN_SIZE, MAX_SIZE)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise ReplearnError(f"{name}={value!r} is invalid: must be an integer in [{low}, {high}]"
                                + (" (28 = MNIST-sized, 56 = twice as large)" if name == "size" else ""))


_TURNED = [2, 3, 0, 1]  # a quarter turn: new orientation index -> old (H <-> V, / <-> \\)


def _turn(x: torch.Tensor) -> torch.Tensor:
    return torch.rot90(x, 1, dims=(-2, -1))


def _block(n: int, rng: np.random.Generator, size: int, with_codes: bool) -> dict:
    parts = balanced_labels(n, len(CLASSES), rng)
    scene = compose(parts, rng)
    out = render(scaled(scene.segments, size), n, size, with_codes=with_codes)
    images, ink, codes = out.images, out.ink, out.codes
    # A quarter turn of the whole image where its twin label misses the target (the distractors lean
    # to it already, so this is rare): both labellings then share the same images.
    rows = torch.from_numpy(np.flatnonzero(stroke_labels(ink).numpy() != scene.twin))
    if len(rows):
        images[rows] = _turn(images[rows])
        ink[rows] = ink[rows][:, _TURNED]
        if with_codes:
            low = codes[rows] & 0xF
            moved = torch.zeros_like(low)
            for new, old in enumerate(_TURNED):
                moved |= ((low >> old) & 1) << new
            codes[rows] = _turn((codes[rows] & ~0xF) | moved)
    return {"images": images.unsqueeze(1), "parts": torch.from_numpy(parts).long(), "strokes": stroke_labels(ink),
            "ink": ink, "codes": codes}


def generate_arrays(n: int, seed: int, size: int = 28, with_codes: bool = True) -> dict:
    """images uint8 (n, 1, size, size), ``parts`` and ``strokes`` labels int64 (n,), ``ink`` (n, 4) level-1
    pixel counts, ``codes`` int16 (n, size, size) or None (bits: ORIENTATIONS, PART_TYPES, object)."""
    check_arguments(n, seed, size)
    blocks = [_block(min(BLOCK, n - start), np.random.default_rng([seed, start // BLOCK]), size, with_codes)
              for start in range(0, n, BLOCK)]
    return {key: None if blocks[0][key] is None else torch.cat([b[key] for b in blocks]) for key in blocks[0]}


def masks_from_codes(codes: torch.Tensor, parts: torch.Tensor) -> ConceptMasks:
    """ConceptMasks bool (N, K, H, W) from per-pixel codes (N, H, W) and object labels (N,)."""
    codes = codes.int()
    planes = [((codes >> bit) & 1).bool() for bit in range(len(ORIENTATIONS) + len(PART_TYPES))]
    own = ((codes >> (len(ORIENTATIONS) + OBJECT_BIT)) & 1).bool()
    planes += [own & (parts == c).view(-1, 1, 1) for c in range(len(CLASSES))]
    return ConceptMasks(torch.stack(planes, dim=1), concepts())


def generate(n: int, seed: int, size: int = 28, labels: str = "parts") -> tuple[torch.Tensor, torch.Tensor, ConceptMasks]:
    """``n`` shapes-world images: (images uint8 (n, 1, size, size), labels int64 (n,), ConceptMasks).

    The same ``seed`` gives the same bytes. ``labels``: "parts" (the object, CLASSES) or
    "strokes" (the twin, STROKE_CLASSES); the images and masks do not depend on it. The 8
    object classes are exactly balanced when n is a multiple of 8 (otherwise some have one
    image more); the 2 twin classes are balanced within every object class, up to the rare
    image whose horizontal and vertical ink tie.
    """
    check_labels(labels)
    out = generate_arrays(n, seed, size, with_codes=True)
    return out["images"], out[labels], masks_from_codes(out["codes"], out["parts"])
