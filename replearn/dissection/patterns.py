"""Concept patterns: each pixel's set of concepts as one small integer, so intersections are a count.

A pixel of a probe image lies in some subset of the K concept masks. The distinct subsets over
the probe set (a few thousand on MNIST) are numbered; ``ids`` (N, H*W) holds each pixel's number and
``bits`` (n, K) each number's concepts. A unit's intersections with every concept are then one
bincount of (unit, pattern) over its on pixels, followed by ``counts @ bits``, instead of a
gather of K floats per on pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.weak import WeakTensorKeyDictionary


@dataclass(frozen=True)
class ConceptPatterns:
    """``ids`` int32 (N, P): each pixel's pattern; ``bits`` bool (n, K): the concepts of each pattern."""

    ids: torch.Tensor
    bits: torch.Tensor

    @property
    def count(self) -> int:
        """Number of distinct patterns."""
        return self.bits.shape[0]

    def concept_area(self, images: int) -> torch.Tensor:
        """(K,) float64: each concept's pixels over the first ``images`` images."""
        per_pattern = torch.bincount(self.ids[:images].reshape(-1), minlength=self.count)
        return per_pattern.double() @ self.bits.double()


_MEMO = WeakTensorKeyDictionary()  # tensors compare elementwise, so a plain WeakKeyDictionary cannot hold them


def _numbered(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of ``codes`` (n, ...), each input row's number); the empty pattern, where most pixels
    are, is numbered without sorting it."""
    flat = codes.reshape(len(codes), -1)
    empty = ~flat.any(1)
    rest = np.flatnonzero(~empty)
    unique, numbers = np.unique(codes[rest], axis=0 if codes.ndim > 1 else None, return_inverse=True)
    if len(rest) == len(codes):
        return unique, numbers.reshape(-1)
    ids = np.zeros(len(codes), dtype=np.int64)
    ids[rest] = numbers.reshape(-1) + 1
    return np.concatenate([np.zeros_like(codes[:1]), unique]), ids


def concept_patterns(masks: torch.Tensor) -> ConceptPatterns:
    """The :class:`ConceptPatterns` of bool masks (N, K, H, W); remembered per mask tensor (the same masks serve
    every layer, the controls and the references; masks are never changed in place)."""
    cached = _MEMO.get(masks)
    if cached is not None:
        return cached
    n, k = masks.shape[:2]
    flat = masks.reshape(n, k, -1).numpy()  # (N, K, P)
    if k <= 64:  # one integer per pixel: bit c set when the pixel is in concept c
        codes = np.zeros(flat.shape[::2], dtype=np.uint64)
        for c in range(k):
            codes |= flat[:, c].astype(np.uint64) << np.uint64(c)
        unique, ids = _numbered(codes.reshape(-1))
        bits = (unique[:, None] >> np.arange(k, dtype=np.uint64)) & np.uint64(1)
    else:  # the concepts packed into bytes, one row per pixel
        packed = np.packbits(flat, axis=1, bitorder="little").transpose(0, 2, 1).reshape(n * flat.shape[2], -1)
        unique, ids = _numbered(packed)
        bits = np.unpackbits(unique, axis=1, count=k, bitorder="little")
    out = ConceptPatterns(torch.from_numpy(ids.reshape(n, -1).astype(np.int32)), torch.from_numpy(bits.astype(bool)))
    _MEMO[masks] = out
    return out
