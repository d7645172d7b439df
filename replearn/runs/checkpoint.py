"""Checkpoints: written atomically, loaded with ``weights_only=True`` (never runs code from the file)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch

from replearn.errors import ReplearnError
from replearn.guards import check_archive
from replearn.runs.atomic import atomic_write
from replearn.runs.layout import CHECKPOINT


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact.

    torch reports a failed write (a full disk, ``ulimit -f``) as a RuntimeError: it becomes the
    OSError it is, so the caller's one-line handling of full disks applies.
    """
    try:
        atomic_write(path, lambda handle: torch.save(state, handle), binary=True)
    except RuntimeError:  # e.g. "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
        raise OSError(errno.EFBIG, "the write failed: the disk is full or a file size limit (ulimit -f) was reached",
                      str(path)) from None


def checkpoint_path(spec: str | os.PathLike) -> Path:
    """A checkpoint file from a run folder or a checkpoint path."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ReplearnError(f"no checkpoint at {path}; pass a run folder written by scripts/train.py or its {CHECKPOINT}")
    return path


def load_checkpoint(spec: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (tensors and plain containers only)."""
    path = checkpoint_path(spec)
    check_archive(path, "checkpoint")  # a zip bomb is refused before torch inflates it
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        text = str(exc)
        # torch's own messages here suggest weights_only=False, i.e. running code from the file: never repeat them.
        if "Unsupported global" in text or "Unsupported class" in text:
            reason = ("it holds objects other than tensors and plain containers, which are refused because loading "
                      "them could run code")
        elif "weights_only" in text or "Weights only load failed" in text:
            reason = "it is not a readable tensor file"
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        raise ReplearnError(f"cannot load {path}: {reason}; the file is corrupt or not a replearn checkpoint: "
                            "use a run folder written by scripts/train.py") from None
