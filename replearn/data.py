"""MNIST-family datasets as uint8 tensors, decoded from the standard IDX files.

Images stay uint8 ``(N, 1, 28, 28)`` until a batch is used; training indexes
tensors that already live on the training device, so there is no per-sample
PIL work. The data root is only ever written to by torchvision's download.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from replearn.errors import ReplearnError

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049

DATASETS = {
    # name: (torchvision class / folder, mean, std, class names)
    "mnist": ("MNIST", 0.1307, 0.3081, [str(i) for i in range(10)]),
    "fashion_mnist": (
        "FashionMNIST",
        0.2860,
        0.3530,
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    ),
}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class Splits:
    """Train/validation/test tensors: images uint8 (N, 1, H, W), labels int64 (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    name: str
    classes: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    mean: float = 0.0
    std: float = 1.0
    # The ``data`` config as a plain dict where the concept masks come from the data set itself
    # (data=shapes: ``replearn.dissection.concept_cache.concepts_for`` regenerates them); else None.
    data_cfg: dict | None = None

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> standardized float32 ((x/255 - mean) / std)."""
        return (images.float() / 255.0 - self.mean) / self.std

    def to(self, device: torch.device) -> Splits:
        """Move every tensor to ``device`` (once, before training)."""
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return Splits(**moved, name=self.name, classes=self.classes, mean=self.mean, std=self.std, data_cfg=self.data_cfg)


def default_root() -> str:
    """``$REPLEARN_DATA_DIR`` if set, else ``./data``."""
    return os.environ.get("REPLEARN_DATA_DIR", "./data")


def read_idx(path: Path) -> torch.Tensor:
    """Decode one IDX file (raw or .gz): uint8 images (N, H, W) or labels (N,).

    Raises ReplearnError naming the file if the header or the length is wrong.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ReplearnError(f"cannot read {path}: {exc}; delete it and download again") from None
    if len(payload) < 8:
        raise ReplearnError(f"{path} is truncated ({len(payload)} bytes); delete it and download again")
    magic, count = struct.unpack(">II", payload[:8])
    if magic == IMAGE_MAGIC:
        if len(payload) < 16:
            raise ReplearnError(f"{path} is truncated (no image header); delete it and download again")
        rows, cols = struct.unpack(">II", payload[8:16])
        shape, offset = (count, rows, cols), 16
    elif magic == LABEL_MAGIC:
        shape, offset = (count,), 8
    else:
        raise ReplearnError(
            f"{path} is not an IDX file (magic {magic}, expected {IMAGE_MAGIC} or {LABEL_MAGIC}); "
            "delete it and download again"
        )
    expected = offset + math.prod(shape)
    if len(payload) != expected:
        raise ReplearnError(
            f"{path} has {len(payload)} bytes but its header promises {expected}; "
            "the file is truncated or corrupt: delete it and download again"
        )
    data = torch.frombuffer(bytearray(payload), dtype=torch.uint8, offset=offset, count=math.prod(shape))
    return data.reshape(shape)


def _find(raw_dir: Path, stem: str) -> Path | None:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_message(name: str, raw_dir: Path, reason: str) -> str:
    files = ", ".join(f"{stem}[.gz]" for stem in FILES.values())
    return (
        f"{name} not found in {raw_dir} ({reason}); put the four IDX files there ({files}), "
        f"or point data.root / $REPLEARN_DATA_DIR at a folder holding {DATASETS[name][0]}/raw/"
    )


def _download(name: str, root: Path, raw_dir: Path) -> None:
    import torchvision.datasets as tvd  # lazy: torchvision (~0.5 s) is only needed to download

    dataset_cls = getattr(tvd, DATASETS[name][0])
    try:
        for train in (True, False):
            dataset_cls(str(root), train=train, download=True)
    except Exception as exc:  # offline, proxy, disk: one message either way
        reason = f"download failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise ReplearnError(_missing_message(name, raw_dir, reason)) from None


def load_raw(name: str, root: str | os.PathLike, download: bool = False) -> dict[str, torch.Tensor]:
    """The four tensors of an MNIST-family dataset under ``root`` in torchvision's layout."""
    if name not in DATASETS:
        raise ReplearnError(f"data.name={name!r} is invalid: choose one of {', '.join(DATASETS)}, synthetic or shapes")
    root = Path(root).expanduser()
    raw_dir = root / DATASETS[name][0] / "raw"
    paths = {key: _find(raw_dir, stem) for key, stem in FILES.items()}
    if any(p is None for p in paths.values()):
        if not download:
            raise ReplearnError(_missing_message(name, raw_dir, "files missing and data.download=false"))
        _download(name, root, raw_dir)
        paths = {key: _find(raw_dir, stem) for key, stem in FILES.items()}
        if any(p is None for p in paths.values()):
            raise ReplearnError(_missing_message(name, raw_dir, "download left files missing"))
    tensors = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        if images.dim() != 3 or labels.dim() != 1:
            raise ReplearnError(f"{paths[f'{split}_images']} or {paths[f'{split}_labels']} holds the wrong kind of IDX data")
        if images.shape[0] != labels.shape[0]:
            raise ReplearnError(
                f"{paths[f'{split}_images']} has {images.shape[0]} images but "
                f"{paths[f'{split}_labels']} has {labels.shape[0]} labels; the files do not belong together"
            )
        if labels.numel() and int(labels.max()) >= len(DATASETS[name][3]):
            raise ReplearnError(f"{paths[f'{split}_labels']} has label {int(labels.max())}; expected 0-9")
    return tensors


def split_validation(images: torch.Tensor, labels: torch.Tensor, val_size: int, seed: int):
    """Hold out ``val_size`` random training examples (seeded) for model selection."""
    if val_size >= len(images):
        raise ReplearnError(f"data.val_size={val_size} is invalid: must be smaller than the {len(images)} training images")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]


def make_synthetic(num_train: int = 3000, num_test: int = 1000, seed: int = 0, val_size: int = 500) -> Splits:
    """A learnable 10-class 28x28 dataset: class prototypes (strokes) shifted by +-3 px, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    prototypes = []
    for c in range(10):
        # A bar at a class-specific angle plus a blob at a class-specific position.
        angle = math.pi * c / 10
        dist = (xx - 13.5) * math.sin(angle) - (yy - 13.5) * math.cos(angle)
        along = (xx - 13.5) * math.cos(angle) + (yy - 13.5) * math.sin(angle)
        bar = torch.exp(-(dist**2) / 3.0) * (along.abs() < 9).float()
        cy, cx = 7 + 14 * (c % 2), 6 + 4 * (c // 2)
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
        prototypes.append(torch.clamp(bar + blob, 0, 1))
    prototypes = torch.stack(prototypes)  # (10, 28, 28)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (n,), generator=gen)
        shifts = torch.randint(-3, 4, (n, 2), generator=gen)
        images = torch.stack(
            [torch.roll(prototypes[y], (int(s[0]), int(s[1])), dims=(0, 1)) for y, s in zip(labels, shifts)]
        )
        images = images + 0.25 * torch.rand(n, 28, 28, generator=gen)
        return (images.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1), labels

    train_x, train_y = sample(num_train + val_size)
    test_x, test_y = sample(num_test)
    # From the pixel histogram (as replearn.shapes): exact counts, so the same bits at any thread count
    # (a float mean over a million pixels is summed in chunks per thread).
    counts = torch.bincount(train_x.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = float((counts * values).sum() / counts.sum())
    std = float(((counts * (values - mean) ** 2).sum() / (counts.sum() - 1)).sqrt())
    return Splits(
        train_x[val_size:], train_y[val_size:], train_x[:val_size], train_y[:val_size], test_x, test_y,
        name="synthetic", mean=mean, std=std,
    )


def shuffle_train_labels(splits: Splits, seed: int) -> Splits:
    """``splits`` with its training labels permuted by a permutation seeded with ``seed`` (validation and test
    labels and every image untouched): the labels keep their class counts but no longer belong to their images."""
    order = torch.randperm(len(splits.train_y), generator=torch.Generator().manual_seed(seed))  # (N,)
    return replace(splits, train_y=splits.train_y[order])


def load_splits(data_cfg) -> Splits:
    """Build train/val/test splits from a ``data`` config node (``data.shuffle_labels``: training labels permuted)."""
    splits = _build_splits(data_cfg)
    # .get: configs written before the key existed (checkpoints of older runs) trained on the true labels.
    if data_cfg.get("shuffle_labels", False):
        splits = shuffle_train_labels(splits, int(data_cfg.get("label_shuffle_seed", 0)))
    return splits


def _build_splits(data_cfg) -> Splits:
    name = data_cfg.name
    if name == "synthetic":
        return make_synthetic(data_cfg.num_train, data_cfg.num_test, data_cfg.split_seed, data_cfg.val_size)
    if name == "shapes":  # generated (replearn.shapes), cached per user
        from replearn.shapes.cache import load_shapes  # lazy: only shapes runs need the generator

        t = load_shapes(data_cfg)
        return Splits(t["train_x"], t["train_y"], t["val_x"], t["val_y"], t["test_x"], t["test_y"],
                      name="shapes", classes=t["classes"], mean=t["mean"], std=t["std"],
                      data_cfg={k: data_cfg.get(k) for k in ("name", "size", "labels", "val_size", "split_seed")})
    raw = load_raw(name, data_cfg.root, download=data_cfg.download)
    train_x, train_y, val_x, val_y = split_validation(
        raw["train_images"], raw["train_labels"], data_cfg.val_size, data_cfg.split_seed
    )
    _, mean, std, classes = DATASETS[name]
    return Splits(
        train_x.unsqueeze(1), train_y.long(), val_x.unsqueeze(1), val_y.long(),
        raw["test_images"].unsqueeze(1), raw["test_labels"].long(),
        name=name, classes=classes, mean=mean, std=std,
    )
