"""Schema of the ``logger`` group: where a run's metrics go besides ``metrics.jsonl`` (always written).

``logger=csv|tensorboard|wandb`` turns one on; combine them with ``logger.csv=true`` etc.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from replearn.errors import ReplearnError


@dataclass
class LoggerConfig:
    # Which option was picked (for the help text and the run's config.yaml).
    name: str = "jsonl"
    # metrics.csv next to metrics.jsonl: one row per epoch.
    csv: bool = False
    # <run>/tensorboard/: scalars per step and epoch, first-layer filters as images and activation
    # histograms per layer each epoch, per-layer embeddings for the projector after training.
    tensorboard: bool = False
    # Weights & Biases (skipped with a warning when the wandb package is not installed).
    wandb: bool = False
    wandb_project: str = "replearn"
    # online | offline | disabled (offline needs no account: `wandb sync` uploads later).
    wandb_mode: str = "offline"
    # Train loss and learning rate every this many steps (0: per epoch only).
    every_n_steps: int = 10
    # Validation images whose per-layer activations are histogrammed each epoch (0: none).
    histogram_images: int = 256
    # First-layer units/filters drawn as images each epoch (0: none).
    filter_images: int = 64
    # Test images projected per layer for TensorBoard's projector after training (0: none).
    embedding_images: int = 1000


def validate_logger(cfg) -> None:
    """Raise ReplearnError naming the first invalid ``logger`` key."""
    for key in ("every_n_steps", "histogram_images", "filter_images", "embedding_images"):
        if int(cfg[key]) < 0:
            raise ReplearnError(f"logger.{key}={cfg[key]} is invalid: use 0 (off) or a positive integer")
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ReplearnError('logger=tensorboard needs the tensorboard package: pip install -e ".[tensorboard]" '
                            "(or pip install tensorboard), or pick logger=csv")
    if cfg.wandb_mode not in ("online", "offline", "disabled"):
        raise ReplearnError(f"logger.wandb_mode={cfg.wandb_mode!r} is invalid: choose one of online, offline, disabled")


ConfigStore.instance().store(group="logger", name="logger_schema", node=LoggerConfig)
