"""Concept masks built once per probe set and kept in the per-user cache (``replearn/cache.py``).

Masks are stored bit-packed (a 10,000-image MNIST probe set is ~22 MB instead of
~180 MB). The key hashes the images, labels, class names and ``CONCEPT_VERSION``, so
changing a concept definition means bumping the version, never trusting old masks.
"""

from __future__ import annotations

import numpy as np
import torch

from replearn.cache import cached, content_key
from replearn.dissection.concepts import Concept, ConceptMasks, build_concept_masks, concept_list, default_class_names

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
        if payload.get("version") != CONCEPT_VERSION or payload.get("names") != expected_names:
            raise ValueError("written by another concept version")
        if tuple(payload["shape"].tolist()) != shape:
            raise ValueError(f"shape {tuple(payload['shape'].tolist())}, expected {shape}")
        if payload["packed"].numel() != (int(np.prod(shape)) + 7) // 8:
            raise ValueError("truncated mask data")

    payload = cached(CACHE_SUB, key, build, validate, use_cache=use_cache)
    concepts = [Concept(name, int(level)) for name, level in zip(payload["names"], payload["levels"])]
    return ConceptMasks(_unpack(payload["packed"], shape), concepts)
