"""A procedurally generated shapes world with exact concept masks: strokes build parts, parts build objects.

- :func:`generate` (generate.py): seeded images, labels and ``ConceptMasks`` at three levels;
- draw.py: the anti-aliased, batched stroke rasterizer;
- parts.py / objects.py: the level-2 parts and the 8 object classes built from them;
- scenes.py / layout.py / distractors.py: one object per image, distractor parts, ink matching;
- labels.py: the object labels and the strokes twin (a negative control);
- cache.py: the ``data=shapes`` splits, cached per user, and :func:`concept_masks_for_split`,
  the generator's masks for a split (for dissection, instead of the MNIST heuristics).
"""

from replearn.shapes.cache import concept_masks_for_split, load_shapes
from replearn.shapes.generate import concepts, generate
from replearn.shapes.labels import LABELS, STROKE_CLASSES, class_names
from replearn.shapes.objects import CLASSES
from replearn.shapes.parts import PART_TYPES

__all__ = ["CLASSES", "LABELS", "PART_TYPES", "STROKE_CLASSES", "class_names", "concept_masks_for_split", "concepts",
           "generate", "load_shapes"]
