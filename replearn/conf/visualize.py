"""Schema and checks for ``scripts/visualize.py`` (configs/visualize.yaml)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from replearn.errors import ReplearnError

EMBEDDINGS = ("pca", "tsne")
# Kept equal to replearn.actmax.choice.PRIOR_CHOICES (a test checks); not imported, so the schema stays torch-free.
PRIORS = ("auto", "pixel", "fourier", "pca", "gaussian", "gmm")


@dataclass
class VisualizeConfig:
    # A run folder written by scripts/train.py, or "latest" (newest run with a checkpoint under root).
    run: str = MISSING
    root: str = "outputs"
    # "all" (every hidden block and the head) or a list of layer names, e.g. [blocks.0,head].
    layers: Any = "all"
    # At most this many units/channels per layer in the grids: the most responsive ones (highest mean
    # top-k activation on the test split); the head always shows every class.
    units: int = 16
    k: int = 9
    # Gradient-ascent steps for activation maximization.
    steps: int = 256
    seed: int = 0
    embedding: str = "pca"
    embedding_samples: int = 2000
    # Test inputs whose feature maps are drawn.
    num_inputs: int = 4
    # Act-max in a decorrelated Fourier basis instead of pixels (the same as prior=fourier).
    fourier: bool = False
    # Act-max image prior: auto (the best recognizability score of them all), pixel, fourier, pca, gaussian, gmm.
    prior: str = "auto"
    # Density weights tried per unit; each unit keeps the largest whose image still reaches its top-1 activation.
    prior_weights: Any = field(default_factory=lambda: [0.3, 1.0, 3.0])
    # "What each unit detects": network dissection of every shown layer (and of the random-init
    # control) on the first dissect_images test images.
    dissect: bool = True
    dissect_images: int = 2000
    device: str = "auto"
    # Torch CPU threads; 0 = auto, as trainer.threads: the cores other processes leave free (act-max
    # itself always runs on one).
    threads: int = 0
    progress: bool = True
    # Draw even if the memory or act-max time estimate (replearn.guards.check_visualize) says the page is too big.
    force_resources: bool = False


def validate_visualize(cfg: DictConfig) -> None:
    """Raise ReplearnError (one line naming the key and the fix) on a bad visualize config."""
    if OmegaConf.is_missing(cfg, "run") or not str(cfg.run):
        raise ReplearnError("run is missing: pass run=<run dir> (a folder written by scripts/train.py) or run=latest")
    for key, minimum in (("units", 1), ("k", 1), ("steps", 1), ("embedding_samples", 3), ("num_inputs", 1),
                         ("dissect_images", 1), ("threads", 0)):
        value = cfg.get(key, minimum)
        if value < minimum:
            raise ReplearnError(f"{key}={value!r} is invalid: must be an integer >= {minimum}")
    if not 0 <= cfg.seed < 2**32:  # numpy/scikit-learn seeds are 32-bit
        raise ReplearnError(f"seed={cfg.seed!r} is invalid: must be an integer in [0, 2**32)")
    prior = cfg.get("prior", "auto")
    if prior not in PRIORS:
        raise ReplearnError(f"prior={prior!r} is invalid: choose one of {', '.join(PRIORS)}")
    weights = cfg.get("prior_weights", [1.0])
    if not isinstance(weights, (list, ListConfig)) or not weights or \
            not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                    for w in weights):
        shown = list(weights) if isinstance(weights, (list, ListConfig)) else weights
        raise ReplearnError(f"prior_weights={shown!r} is invalid: use a non-empty list of finite numbers >= 0 like [0.3,1,3]")
    if cfg.embedding not in EMBEDDINGS:
        raise ReplearnError(f"embedding={cfg.embedding!r} is invalid: choose one of {', '.join(EMBEDDINGS)}")
    layers = cfg.layers
    if isinstance(layers, (list, ListConfig)):
        if not layers or not all(isinstance(name, str) for name in layers):
            raise ReplearnError(f"layers={list(layers)!r} is invalid: "
                                "use all or a non-empty list of layer names like [blocks.0,head]")
    elif layers != "all":
        raise ReplearnError(f"layers={layers!r} is invalid: use all or a list of layer names like [blocks.0,head]")
    device = str(cfg.device)
    if device != "auto" and not (device == "cpu" or device.startswith("cuda")):
        raise ReplearnError(f"device={device!r} is invalid: use auto, cpu, cuda or cuda:N")


ConfigStore.instance().store(name="visualize_schema", node=VisualizeConfig)
