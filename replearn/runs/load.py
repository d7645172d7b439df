"""Finding and loading run folders written by scripts/train.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from replearn.data import Splits, load_splits
from replearn.errors import ReplearnError
from replearn.guards import check_images, check_stored_model
from replearn.models import LayeredModel, build_model_from_config
from replearn.runs.checkpoint import load_checkpoint
from replearn.runs.layout import CHECKPOINT, CONTROLS, FINAL, read_final


@dataclass
class LoadedRun:
    """A trained model (eval mode) with its resolved config and folder."""

    model: LayeredModel
    cfg: DictConfig
    run_dir: Path

    def splits(self) -> Splits:
        """The run's dataset (same validation split as in training)."""
        return check_images(load_splits(self.cfg.data), self.cfg.data)


def _finished_ok(run_dir: Path) -> bool:
    final = read_final(run_dir)
    return final is not None and final.get("status") == "ok"


def latest_run(root: str | os.PathLike = "outputs", pattern: str = "") -> Path:
    """The newest run under ``root`` that finished (final.json status ok) and whose path contains ``pattern``.

    Runs still in progress, killed or diverged are skipped: their checkpoint is newer than the
    last finished run's but is not a finished model.
    """
    root = Path(root)
    spec = "latest" + (f":{pattern}" if pattern else "")
    # A run's controls (<run>/controls/...) are run folders too, but never "the latest run".
    runs = [p.parent for p in root.glob(f"**/{CHECKPOINT}")
            if pattern in str(p.parent.relative_to(root)) and CONTROLS not in p.parent.relative_to(root).parts]
    if not runs:
        matching = f" matching {pattern!r}" if pattern else ""
        raise ReplearnError(f"run={spec} found no run{matching} under {root.resolve()}; train one first "
                            "(python scripts/train.py depth=5) or pass run=<run dir>")
    finished = [d for d in runs if _finished_ok(d)]
    if not finished:
        newest = max(runs, key=lambda d: (d / CHECKPOINT).stat().st_mtime)
        raise ReplearnError(f"run={spec} found no finished run under {root.resolve()} ({len(runs)} in progress, "
                            f"stopped or diverged; the newest {newest}); wait for it to finish or pass run=<run dir>")
    return max(finished, key=lambda d: (d / FINAL).stat().st_mtime)


def resolve_run_dir(spec: str | os.PathLike, root: str | os.PathLike = "outputs") -> Path:
    """A run folder from a path, or ``latest`` / ``latest:<text>``: the newest finished run under ``root``
    (whose path contains ``<text>``, e.g. ``latest:cnn`` or ``latest:depth=8``)."""
    if str(spec) == "latest" or str(spec).startswith("latest:"):
        return latest_run(root, str(spec).partition(":")[2])
    path = Path(spec).expanduser()
    if path.is_file() and path.name == CHECKPOINT:
        path = path.parent
    if not (path / CHECKPOINT).is_file():
        raise ReplearnError(f"run={spec} is not a run folder (no {CHECKPOINT} in {path}); "
                            "pass a folder written by scripts/train.py or run=latest")
    return path


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of a run folder and load its final weights.

    The checkpoint's stored config is checked before the model is built: a file can describe a
    model far too big for this machine (``REPLEARN_FORCE_RESOURCES=1`` builds it anyway).
    """
    run_dir = resolve_run_dir(run_dir)
    path = run_dir / CHECKPOINT
    state = load_checkpoint(run_dir, map_location=device)
    stored = state.get("config") if isinstance(state, dict) else None
    if not isinstance(stored, dict) or not isinstance(stored.get("model"), dict) or "model" not in state:
        raise ReplearnError(f"{path} holds no model config and weights; pass a run folder written by scripts/train.py")
    check_stored_model(stored["model"], str(path), torch.device(device).type)
    try:
        cfg = OmegaConf.create(stored)
        model = build_model_from_config(cfg.model)
        model.load_state_dict(state["model"])
    except Exception as exc:  # the stored config and weights come from a file: any mismatch is one line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReplearnError(f"{path} does not rebuild: {first}; the checkpoint is damaged or from another version") from None
    model.to(device).eval()
    return LoadedRun(model=model, cfg=cfg, run_dir=run_dir)
