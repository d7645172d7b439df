"""Schema of scripts/compare_depth.py."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class CompareDepthConfig:
    # A multirun folder (e.g. multirun/depth_mlp) or "latest" (newest sweep under root).
    sweep: str = MISSING
    root: str = "multirun"
    # Test images for the cross-depth CKA (0 skips it).
    cross_cka_images: int = 2000
    progress: bool = True


ConfigStore.instance().store(name="compare_depth_schema", node=CompareDepthConfig)
