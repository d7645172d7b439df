"""Seeds and devices are resolved here and nowhere else."""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

from replearn.errors import ReplearnError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ReplearnError(f"device={name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReplearnError(f"device={name!r} but no CUDA GPU is available; use device=auto or device=cpu")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA; none on CPU, where bf16 is emulated and ~13x slower."""
    return torch.bfloat16 if device.type == "cuda" else None


@contextmanager
def single_thread():
    """Run torch on one CPU thread inside the block (restored after).

    Act-max and gradient probes run hundreds of small ops on ~16 images: a second thread only
    adds synchronisation (on a busy 2-core machine 2 threads measured 15-50x slower than 1).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
