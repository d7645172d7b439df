"""Finding and loading run folders written by scripts/train.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from replearn.checkpoint import CHECKPOINT_NAME, load_checkpoint
from replearn.data import Splits, load_splits
from replearn.errors import ReplearnError
from replearn.models import LayeredModel, build_model


@dataclass
class LoadedRun:
    """A trained model (eval mode) with its resolved config and folder."""

    model: LayeredModel
    cfg: DictConfig
    run_dir: Path

    def splits(self) -> Splits:
        """The run's dataset (same validation split as in training)."""
        return load_splits(self.cfg.data)


def resolve_run_dir(spec: str | os.PathLike, root: str | os.PathLike = "outputs") -> Path:
    """A run folder from a path, or ``latest``: the newest folder with a checkpoint under ``root``."""
    if str(spec) == "latest":
        candidates = list(Path(root).glob(f"**/{CHECKPOINT_NAME}"))
        if not candidates:
            raise ReplearnError(f"run=latest found no run under {Path(root).resolve()}; train one first (python scripts/train.py depth=5) or pass run=<run dir>")
        return max(candidates, key=lambda p: p.stat().st_mtime).parent
    path = Path(spec).expanduser()
    if path.is_file() and path.name == CHECKPOINT_NAME:
        path = path.parent
    if not (path / CHECKPOINT_NAME).is_file():
        raise ReplearnError(f"run={spec} is not a run folder (no {CHECKPOINT_NAME} in {path}); pass a folder written by scripts/train.py or run=latest")
    return path


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of a run folder and load its final weights."""
    run_dir = resolve_run_dir(run_dir)
    state = load_checkpoint(run_dir, map_location=device)
    cfg = OmegaConf.create(state["config"])
    model = build_model(**OmegaConf.to_container(cfg.model, resolve=True))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedRun(model=model, cfg=cfg, run_dir=run_dir)
