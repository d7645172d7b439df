"""Checkpoints: written atomically, loaded with ``weights_only=True`` (never runs code from the file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from replearn.errors import ReplearnError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to a temp file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
        # mkstemp creates 0600; give the checkpoint the usual permissions for a new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_path(spec: str | os.PathLike) -> Path:
    """A checkpoint file from a run folder or a checkpoint path."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ReplearnError(f"no checkpoint at {path}; pass a run folder written by scripts/train.py or its {CHECKPOINT_NAME}")
    return path


def load_checkpoint(spec: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (tensors and plain containers only)."""
    path = checkpoint_path(spec)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReplearnError(f"cannot load {path}: {first}; the file is corrupt or not a replearn checkpoint") from None
