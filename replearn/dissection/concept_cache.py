"""Concept masks built once per probe set and kept in the per-user cache (``replearn/cache.py``).

Masks are stored bit-packed (a 10,000-image MNIST probe set is ~22 MB instead of
~180 MB). The key hashes the images, labels, class names and ``CONCEPT_VERSION``, so
changing a concept definition means bumping the version, never trusting old masks.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf

from replearn.cache import cached, content_key
from replearn.dissection.concepts import Concept, ConceptMasks, build_concept_masks, concept_list, default_class_names
from replearn.errors import ReplearnError

# Bump whenever a mask definition or threshold in concepts.py changes.
CONCEPT_VERSION = 4
CACHE_SUB = "concepts"


def _pack(masks: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(masks.numpy().reshape(-1)))


def _unpack(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    count = int(np.prod(shape))
    bits = np.unpackbits(packed.numpy(), count=count)
    return torch.from_numpy(bits.view(bool).reshape(shape))


def load_concept_masks(images: torch.Tensor, labels: torch.Tensor, class_names: list[str] | None = None,
                       progress: bool = False, use_cache: bool = True) -> ConceptMasks:
    """:func:`build_concept_masks`, but built once per probe set and then read back from the cache."""
    labels = torch.as_tensor(labels).long().reshape(-1)
    class_names = default_class_names(labels) if class_names is None else [str(c) for c in class_names]
    key = content_key(images, labels, class_names, CONCEPT_VERSION)
    # Concept names are checked (and duplicate class names rejected) before any work.
    expected_names = [c.name for c in concept_list(class_names)]
    n = images.shape[0]
    h, w = images.shape[-2:]
    shape = (n, len(expected_names), h, w)

    def build() -> dict:
        built = build_concept_masks(images, labels, class_names, progress=progress)
        return {
            "packed": _pack(built.masks),
            "shape": torch.tensor(built.masks.shape, dtype=torch.int64),
            "names": [c.name for c in built.concepts],
            "levels": [c.level for c in built.concepts],
            "version": CONCEPT_VERSION,
        }

    def validate(payload: dict) -> None:
        # The checksum (replearn.cache) catches changed bytes; this catches a well-formed entry of other masks.
        if payload.get("version") != CONCEPT_VERSION or payload.get("names") != expected_names:
            raise ValueError("written by another concept version")
        levels, stored_shape, packed = payload.get("levels"), payload.get("shape"), payload.get("packed")
        if not isinstance(levels, list) or len(levels) != len(expected_names) \
                or not all(type(level) is int and 1 <= level <= 3 for level in levels):
            raise ValueError("concept levels are not integers 1-3, one per concept")
        if not isinstance(stored_shape, torch.Tensor) or stored_shape.dtype != torch.int64 \
                or tuple(stored_shape.tolist()) != shape:
            raise ValueError(f"mask shape is not {shape}")
        if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1 \
                or packed.numel() != (int(np.prod(shape)) + 7) // 8:
            raise ValueError("mask data is truncated or of the wrong type")

    payload = cached(CACHE_SUB, key, build, validate, use_cache=use_cache)
    concepts = [Concept(name, int(level)) for name, level in zip(payload["names"], payload["levels"])]
    return ConceptMasks(_unpack(payload["packed"], shape), concepts)


def concepts_for(splits, n: int) -> ConceptMasks:
    """The concept masks of the first ``n`` test images of ``splits`` (a ``replearn.data.Splits``): the one
    place analysis and the run page get a run's masks.

    data=shapes: the generator's exact masks (``replearn.shapes.concept_masks_for_split``); every other
    data set: the morphology masks of :func:`load_concept_masks` (cached per user).
    """
    n = min(int(n), len(splits.test_x))
    images, labels = splits.test_x[:n].cpu(), splits.test_y[:n].cpu()
    if splits.name != "shapes":
        return load_concept_masks(images, labels, list(splits.classes))
    if splits.data_cfg is None:
        raise ReplearnError("these shapes splits carry no data config, so their exact concept masks cannot be "
                            "regenerated; build them with replearn.data.load_splits(cfg.data)")
    from replearn.shapes.cache import concept_masks_for_split, load_split  # lazy: start-up time, shapes runs only

    cfg = OmegaConf.create(splits.data_cfg)
    generated = load_split("test", int(cfg.get("size", 28)))["images"][:n]
    if generated.shape != images.shape or not torch.equal(generated, images):
        raise ReplearnError(f"the first {n} test images of these shapes splits are not the generator's, so its masks "
                            "would not match them; pass the splits of replearn.data.load_splits(cfg.data) unchanged")
    return concept_masks_for_split(cfg, "test", torch.arange(n))
