"""The ``data=shapes`` splits, generated once and kept in the per-user cache (``replearn/cache.py``).

A split is 60,000 training or 10,000 test images generated with a fixed seed, like a
downloaded data set. One cache entry per (split, size, version) holds the images and both
labellings (switching ``data.labels`` never regenerates); a second one, built only when
masks are asked for, the per-pixel concept codes (11 masks packed as bits of one int16, 16
MB for the 10,000 test images). Nothing is written next to any data set.

Masks for dissection: :func:`concept_masks_for_split` gives the generator's exact masks
for the images of a ``load_splits`` split, in the same order.
"""

from __future__ import annotations

import torch

from replearn.cache import cached, content_key
from replearn.dissection.concepts import ConceptMasks
from replearn.errors import ReplearnError
from replearn.shapes.generate import generate_arrays, masks_from_codes
from replearn.shapes.labels import check_labels, class_names

# Bump whenever the generator's output changes (any constant in draw/parts/objects/scenes/generate).
SHAPES_VERSION = 1
CACHE_SUB = "shapes"
SPLITS = {"train": (60_000, 2026), "test": (10_000, 2027)}  # images, seed
SPLIT_NAMES = ("train", "val", "test")


def load_split(split: str, size: int = 28, use_cache: bool = True) -> dict:
    """``images`` uint8 (N, 1, size, size) and the ``parts``/``strokes`` labels int64 (N,) of a generated split."""
    n, seed = _split(split)
    key = content_key("shapes", split, n, seed, size, SHAPES_VERSION)

    def build() -> dict:
        out = generate_arrays(n, seed, size, with_codes=False)
        return {"images": out["images"], "parts": out["parts"], "strokes": out["strokes"], "version": SHAPES_VERSION}

    def validate(payload: dict) -> None:
        if payload.get("version") != SHAPES_VERSION:
            raise ValueError("written by another generator version")
        if tuple(payload["images"].shape) != (n, 1, size, size) or payload["parts"].shape != (n,):
            raise ValueError(f"images {tuple(payload['images'].shape)}, expected {(n, 1, size, size)}")

    return cached(CACHE_SUB, key, build, validate, use_cache=use_cache)


def load_codes(split: str, size: int = 28, use_cache: bool = True) -> torch.Tensor:
    """int16 (N, size, size) per-pixel concept codes of a generated split (built on first use: only dissection
    needs them). Each code packs the 11 generator masks of a pixel as bits (ORIENTATIONS, PART_TYPES, object)."""
    n, seed = _split(split)
    key = content_key("shapes-codes", split, n, seed, size, SHAPES_VERSION)

    def build() -> dict:
        return {"codes": generate_arrays(n, seed, size, with_codes=True)["codes"], "version": SHAPES_VERSION}

    def validate(payload: dict) -> None:
        if payload.get("version") != SHAPES_VERSION or tuple(payload["codes"].shape) != (n, size, size):
            raise ValueError("written by another generator version or for another size")

    return cached(CACHE_SUB, key, build, validate, use_cache=use_cache)["codes"]


def _split(split: str) -> tuple[int, int]:
    if split not in SPLITS:
        raise ReplearnError(f"split={split!r} is invalid: choose one of {', '.join(SPLITS)}")
    return SPLITS[split]


def validation_indices(parts: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices: ``val_size`` images held out at random (seeded), the same number from each
    object class (the remainder from the first classes), so both sides stay balanced."""
    if not 0 <= val_size < len(parts):
        raise ReplearnError(f"data.val_size={val_size} is invalid: must be in [0, {len(parts)}) for data=shapes")
    gen = torch.Generator().manual_seed(seed)
    num_classes = int(parts.max()) + 1
    val = []
    for c in range(num_classes):
        rows = torch.nonzero(parts == c).view(-1)
        take = val_size // num_classes + (1 if c < val_size % num_classes else 0)
        val.append(rows[torch.randperm(len(rows), generator=gen)[:take]])
    is_val = torch.zeros(len(parts), dtype=torch.bool)
    is_val[torch.cat(val)] = True
    return torch.nonzero(~is_val).view(-1), torch.nonzero(is_val).view(-1)


def _config(data_cfg) -> tuple[int, str]:
    size, labels = int(data_cfg.get("size", 28)), str(data_cfg.get("labels", "parts"))
    check_labels(labels)
    return size, labels


def load_shapes(data_cfg) -> dict:
    """The tensors of ``data=shapes`` for ``replearn.data.load_splits``: train/val/test images and labels
    (per ``data.labels``), class names, and the training images' mean/std."""
    size, labels = _config(data_cfg)
    train, test = load_split("train", size), load_split("test", size)
    train_idx, val_idx = validation_indices(train["parts"], int(data_cfg.val_size), int(data_cfg.split_seed))
    images = train["images"]
    # Mean/std of the training pixels from their histogram: exact, without a float copy of 55k images.
    counts = torch.bincount(images[train_idx].reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    std = float(((counts * (values - mean) ** 2).sum() / (counts.sum() - 1)).sqrt())
    return {
        "train_x": images[train_idx], "train_y": train[labels][train_idx],
        "val_x": images[val_idx], "val_y": train[labels][val_idx],
        "test_x": test["images"], "test_y": test[labels],
        "classes": class_names(labels), "mean": mean, "std": std,
    }


def concept_masks_for_split(data_cfg, split: str = "test", index=None) -> ConceptMasks:
    """The generator's exact ConceptMasks for split "train", "val" or "test" of ``data=shapes``, in the order
    of ``load_splits(data_cfg)``'s tensors (``index``: only those images of the split).

    Use these instead of ``replearn.dissection.concepts.build_concept_masks`` (MNIST morphology)
    for shapes runs: level 1 the 4 stroke orientations, level 2 the part types, level 3 one mask
    per object class (the object's own strokes). Level 3 is the objects for both labellings: with
    ``data.labels=strokes`` the masks still describe the same images. The first call per split
    generates and caches its codes (about 1 s for the 10k test images, 6 s and 94 MB for the 60k
    training images); for "train" pass ``index``: all its masks would take 0.8 GB.
    """
    if split not in SPLIT_NAMES:
        raise ReplearnError(f"split={split!r} is invalid: choose one of {', '.join(SPLIT_NAMES)}")
    size, _ = _config(data_cfg)
    data = load_split("test" if split == "test" else "train", size)
    rows = torch.arange(len(data["parts"]))
    if split != "test":
        train_idx, val_idx = validation_indices(data["parts"], int(data_cfg.val_size), int(data_cfg.split_seed))
        rows = train_idx if split == "train" else val_idx
    if index is not None:
        rows = rows[index]
    codes = load_codes("test" if split == "test" else "train", size)
    return masks_from_codes(codes[rows], data["parts"][rows])
