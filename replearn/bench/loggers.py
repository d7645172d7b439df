"""TensorBoard logger cost against an MLP epoch (``python scripts/bench.py suite=loggers``).

Times each part separately, so the figure does not drown in the machine's noise: the import of
``torch.utils.tensorboard`` (in a fresh interpreter that has already imported torch), the per-step
scalars and the per-epoch images and histograms of one epoch, the end-of-run embeddings, and one
training epoch of the same model without any logger. Target: import + event writing < 5% of an epoch.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from replearn.bench.train import replearn_epoch
from replearn.data import load_splits
from replearn.device import resolve_threads
from replearn.models import build_model_from_config
from replearn.training.loggers import TensorBoardLogger

TARGET_FRACTION = 0.05

_IMPORT = ("import time, torch; t = time.perf_counter(); "
           "from torch.utils.tensorboard import SummaryWriter; print(time.perf_counter() - t)")


def import_seconds(repeats: int = 3) -> float:
    """Median seconds to import torch.utils.tensorboard after torch, each in a fresh interpreter."""
    times = sorted(float(subprocess.run([sys.executable, "-c", _IMPORT], capture_output=True, text=True,
                                        check=True).stdout) for _ in range(repeats))
    return times[len(times) // 2]


def run(cfg: DictConfig) -> dict:
    """Measure the parts; return seconds and the overhead fraction for a run of ``trainer.epochs`` epochs."""
    resolve_threads(cfg.trainer.threads)
    epoch_seconds, _ = replearn_epoch(cfg)
    splits = load_splits(cfg.data)
    model = build_model_from_config(cfg.model)
    # The schema's defaults are those of configs/logger/tensorboard.yaml.
    tb_cfg = OmegaConf.merge(cfg, {"logger": {"name": "tensorboard", "tensorboard": True}})
    steps = math.ceil(len(splits.train_x) / cfg.trainer.batch_size)
    history = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "lr": 1e-3,
                "epoch_seconds": epoch_seconds, "samples_per_s": 1.0}]
    imported = import_seconds()
    # lazy: timed above in a fresh interpreter; imported here so the writer's open below is timed without it
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="replearn-bench-") as tmp:
        start = time.perf_counter()
        logger = TensorBoardLogger(Path(tmp), tb_cfg, model, splits, start_step=0)
        open_seconds = time.perf_counter() - start
        epoch_times = []
        for epoch in range(1, 6):  # the first epoch also pays one-time imports (PIL)
            start = time.perf_counter()
            for step in range(0, steps, int(tb_cfg.logger.every_n_steps)):
                logger.log_step(step + (epoch - 1) * steps, {"train_loss": 1.0, "lr": 1e-3})
            logger.log_epoch([dict(history[0], epoch=epoch)], model, splits)
            epoch_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        logger.log_end(model, splits, {"epochs_completed": 1, "test_acc": 0.5, "test_loss": 1.0})
        end_seconds = time.perf_counter() - start
        logger.close()
    epochs = int(cfg.trainer.epochs)
    first, per_epoch = epoch_times[0], statistics.median(epoch_times[1:])
    during = imported + open_seconds + first + (epochs - 1) * per_epoch
    fraction = during / (epochs * epoch_seconds)
    return {
        "model": f"{cfg.model.name} depth={cfg.model.depth}, {epochs} epochs, batch {cfg.trainer.batch_size}",
        "epoch_seconds_no_logger": epoch_seconds,
        "tensorboard_import_seconds": imported,
        "writer_open_seconds": open_seconds,
        "first_epoch_logging_seconds": first,
        "later_epoch_logging_seconds": per_epoch,  # median of 4
        # After the last epoch, once: per-layer embeddings for the projector (not part of any epoch).
        "end_of_run_embeddings_seconds": end_seconds,
        "overhead_fraction_later_epochs": per_epoch / epoch_seconds,
        "overhead_fraction_during_training": fraction,
        "overhead_fraction_with_embeddings": (during + end_seconds) / (epochs * epoch_seconds),
        "target_fraction": TARGET_FRACTION,
        "overhead_ok": fraction < TARGET_FRACTION,  # import + event writing during the epochs
        "note": "timed on a machine shared with other jobs",
    }

