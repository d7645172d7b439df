"""Where a run's numbers go while it trains: CSV, TensorBoard, Weights & Biases (config group ``logger``).

``metrics.jsonl`` is written by the training loop itself and is always there; the loggers here add
views of the same numbers. TensorBoard gets more than scalars: the first layer's units/filters as
images and a histogram of each layer's activations every epoch, and per-layer embeddings of test
images for its projector after training.

The training loop calls four methods of :class:`RunLoggers`: ``log_step`` (every
``logger.every_n_steps`` steps), ``log_epoch``, ``log_end`` and ``close``.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from replearn.errors import ReplearnError
from replearn.recording.hooks import record_activations
from replearn.runs.layout import METRICS_CSV, TENSORBOARD

log = logging.getLogger(__name__)


class CSVLogger:
    """``metrics.csv``: one row per epoch, rewritten whole so a resumed run stays consistent."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_CSV

    def log_epoch(self, history: list[dict], model, splits) -> None:
        columns = list(dict.fromkeys(key for row in history for key in row))
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)


def _filter_grid(model, count: int) -> torch.Tensor:
    """The first ``count`` first-layer units/filters (channel mean) tiled into one (1, H, W) image in [0, 1], grey = 0.

    Tiled here into a tensor rather than drawn as replearn.viz's matplotlib figure: TensorBoard
    takes the image itself, and drawing a figure every epoch costs more than an MLP epoch's logging budget.
    """
    # lazy: replearn.viz imports matplotlib (0.3 s at start-up); only logger.filter_images needs it
    from replearn.viz.weights import first_layer_weights

    weights = first_layer_weights(model)[:count].float().mean(1, keepdim=True)  # (U, 1, h, w)
    if weights.shape[-1] < 14:
        # 3x3 filters would be 3 pixels wide in TensorBoard's image panel: enlarge them (nearest).
        factor = math.ceil(28 / weights.shape[-1])
        weights = weights.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    scale = weights.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-12)
    images = 0.5 + 0.5 * weights / scale  # each unit on its own symmetric scale: 0 -> mid grey
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    padded = torch.ones(rows * cols, h + 1, w + 1)  # a 1-pixel white line between tiles
    padded[:n, :h, :w] = images[:, 0]
    grid = padded.reshape(rows, cols, h + 1, w + 1).permute(0, 2, 1, 3).reshape(rows * (h + 1), cols * (w + 1))
    return grid.unsqueeze(0)  # (1, H, W)


class TensorBoardLogger:
    """Event files in ``<run>/tensorboard/`` (``tensorboard --logdir outputs`` shows every run)."""

    def __init__(self, run_dir: Path, cfg: DictConfig, model, splits, start_step: int):
        try:
            # lazy: tensorboard is an optional dependency (the tensorboard extra)
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ReplearnError(
                "logger=tensorboard needs the tensorboard package: pip install -e \".[tensorboard]\" "
                "(or pip install tensorboard), or pick logger=csv"
            ) from None
        self.cfg = cfg.logger
        # purge_step drops events a killed run wrote after its last checkpoint, so a resumed run has no doubled steps.
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD),
                                    purge_step=start_step if start_step > 0 else None)
        self.steps_per_epoch = math.ceil(len(splits.train_x) / cfg.trainer.batch_size)
        n = min(int(self.cfg.histogram_images), len(splits.val_x))
        self.probe = splits.normalize(splits.val_x[:n]) if n else None  # (n, 1, 28, 28)
        if start_step == 0:
            self.writer.add_text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```", 0)

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(f"step/{key}", value, step)

    def log_epoch(self, history: list[dict], model, splits) -> None:
        row = history[-1]
        epoch = int(row["epoch"])
        for key in ("train_loss", "val_loss"):
            self.writer.add_scalar(f"loss/{key.split('_')[0]}", row[key], epoch)
        for key in ("train_acc", "val_acc"):
            self.writer.add_scalar(f"accuracy/{key.split('_')[0]}", row[key], epoch)
        for key in ("lr", "epoch_seconds", "samples_per_s"):
            if key in row:
                self.writer.add_scalar(f"epoch/{key}", row[key], epoch)
        if self.cfg.filter_images:
            self.writer.add_image("first_layer/weights", _filter_grid(model, int(self.cfg.filter_images)), epoch)
        if self.probe is not None:
            for layer, acts in _activations(model, self.probe).items():
                _add_histogram(self.writer, f"activations/{layer}", acts, epoch)
        self.writer.flush()

    def log_end(self, model, splits, final: dict) -> None:
        epoch = int(final.get("epochs_completed") or 0)
        if "test_acc" in final:
            self.writer.add_scalar("accuracy/test", final["test_acc"], epoch)
            self.writer.add_scalar("loss/test", final["test_loss"], epoch)
        n = min(int(self.cfg.embedding_images), len(splits.test_x))
        if n:
            images = splits.test_x[:n]  # (n, 1, 28, 28) uint8
            labels = [splits.classes[int(y)] for y in splits.test_y[:n]]
            feats = _activations(model, splits.normalize(images), pool=True)
            write_projector(Path(self.writer.get_logdir()), epoch, feats, labels, images.cpu())
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _add_histogram(writer, tag: str, values: torch.Tensor, step: int, bins: int = 64) -> None:
    """A histogram event computed in torch (add_histogram converts to float64 numpy: ~3x the time)."""
    x = values.detach().flatten().float()
    low, high = float(x.min()), float(x.max())
    high = high if high > low else low + 1e-6
    counts = torch.histc(x, bins=bins, min=low, max=high)
    writer.add_histogram_raw(tag, min=low, max=high, num=x.numel(), sum=float(x.sum()),
                             sum_squares=float(x.square().sum()),
                             bucket_limits=torch.linspace(low, high, bins + 1)[1:].tolist(),
                             bucket_counts=counts.tolist(), global_step=step)


def write_projector(log_dir: Path, step: int, feats: dict[str, torch.Tensor], labels: list[str],
                    images: torch.Tensor) -> None:
    """Per-layer embeddings for TensorBoard's projector, all sharing one sprite and one label file.

    Same files and config as ``SummaryWriter.add_embedding``, which would write the same sprite
    once per layer and format each float in Python (1.4 s per layer for 1,000 images here);
    sharing the sprite and letting numpy format the rows takes a fraction of that.
    """
    base = f"{step:05d}"
    (log_dir / base).mkdir(parents=True, exist_ok=True)
    (log_dir / base / "metadata.tsv").write_text("".join(f"{label}\n" for label in labels))
    n, _, h, w = images.shape  # (n, 1, h, w) uint8
    side = math.ceil(math.sqrt(n))
    sprite = np.zeros((side * side, h, w), dtype=np.uint8)
    sprite[:n] = images[:, 0].numpy()
    sprite = sprite.reshape(side, side, h, w).transpose(0, 2, 1, 3).reshape(side * h, side * w)
    Image.fromarray(sprite).save(log_dir / base / "sprite.png", compress_level=1)
    entries = []
    for layer, x in feats.items():
        tag = layer.replace(".", "_")
        (log_dir / base / tag).mkdir(exist_ok=True)
        np.savetxt(log_dir / base / tag / "tensors.tsv", x.flatten(1).numpy(), fmt="%.5g", delimiter="\t")
        entries.append(
            f'embeddings {{\n  tensor_name: "{tag}:{base}"\n  tensor_path: "{base}/{tag}/tensors.tsv"\n'
            f'  metadata_path: "{base}/metadata.tsv"\n  sprite {{\n    image_path: "{base}/sprite.png"\n'
            f"    single_image_dim: {w}\n    single_image_dim: {h}\n  }}\n}}\n"
        )
    with open(log_dir / "projector_config.pbtxt", "a") as handle:
        handle.write("".join(entries))


@torch.inference_mode()
def _activations(model, x: torch.Tensor, pool: bool = False) -> dict[str, torch.Tensor]:
    """Every layer's output for ``x`` (CPU float; conv maps mean-pooled to (N, C) with ``pool``)."""
    was_training = model.training
    model.eval()
    try:
        with record_activations(model, "all") as acts:
            model(x)
            out = {name: (t.mean((2, 3)) if pool and t.dim() == 4 else t).float().cpu() for name, t in acts.items()}
    finally:
        model.train(was_training)
    return out


class WandbLogger:
    """A Weights & Biases run (offline unless ``logger.wandb_mode=online``) in ``<run>/wandb/``."""

    def __init__(self, run_dir: Path, cfg: DictConfig):
        import wandb  # lazy: wandb is an optional dependency; the caller checked that it is installed

        self.wandb = wandb
        self.run = wandb.init(project=cfg.logger.wandb_project, dir=str(run_dir), mode=cfg.logger.wandb_mode,
                              name=Path(run_dir).name, config=OmegaConf.to_container(cfg, resolve=True),
                              resume="allow", reinit=True)

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log({f"step/{k}": v for k, v in scalars.items()}, step=step)

    def log_epoch(self, history: list[dict], model, splits) -> None:
        self.run.log({f"epoch/{k}": v for k, v in history[-1].items()})

    def log_end(self, model, splits, final: dict) -> None:
        self.run.summary.update({k: v for k, v in final.items() if isinstance(v, (int, float, str))})

    def close(self) -> None:
        self.run.finish()


class RunLoggers:
    """The loggers a run's config asks for, called together; a logger without a method is skipped."""

    def __init__(self, loggers: list[Any], every_n_steps: int):
        self.loggers = loggers
        self.every_n_steps = every_n_steps

    @property
    def wants_steps(self) -> bool:
        return self.every_n_steps > 0 and any(hasattr(lg, "log_step") for lg in self.loggers)

    def _call(self, method: str, *args) -> None:
        for logger in self.loggers:
            if hasattr(logger, method):
                getattr(logger, method)(*args)

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        """Per-step scalars (``step`` counts from 0 over the whole run)."""
        if self.every_n_steps and step % self.every_n_steps == 0:
            # Tensors are read here, only on logged steps (reading one waits for the GPU).
            self._call("log_step", step, {key: float(value) for key, value in scalars.items()})

    def log_epoch(self, history: list[dict], model, splits) -> None:
        self._call("log_epoch", history, model, splits)

    def log_end(self, model, splits, final: dict) -> None:
        self._call("log_end", model, splits, final)

    def close(self) -> None:
        self._call("close")


def build_loggers(cfg: DictConfig, run_dir: str | Path, model, splits, start_epoch: int = 1) -> RunLoggers:
    """The loggers ``cfg.logger`` turns on (none for the default ``logger=jsonl``)."""
    lcfg = cfg.get("logger")
    if lcfg is None:
        return RunLoggers([], 0)
    run_dir = Path(run_dir)
    loggers: list[Any] = []
    if lcfg.csv:
        loggers.append(CSVLogger(run_dir))
    if lcfg.tensorboard:
        start_step = (start_epoch - 1) * math.ceil(len(splits.train_x) / cfg.trainer.batch_size)
        loggers.append(TensorBoardLogger(run_dir, cfg, model, splits, start_step))
    if lcfg.wandb:
        if importlib.util.find_spec("wandb") is None:
            log.warning("logger.wandb=true but the wandb package is not installed (pip install wandb): skipping it")
        else:
            loggers.append(WandbLogger(run_dir, cfg))
    return RunLoggers(loggers, int(lcfg.every_n_steps))


def console_logging() -> None:
    """Show replearn's INFO lines on stdout when nothing configured logging (plain Python, notebooks).

    Under Hydra (scripts, console commands) the job's logging config is already in place and
    writes ``train.log``; then this does nothing.
    """
    package = logging.getLogger("replearn")
    if logging.getLogger().handlers or package.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)
