"""Range and choice checks that OmegaConf's types cannot express.

Each failure is one line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from replearn.conf.analysis import validate_analysis
from replearn.conf.logger import validate_logger
from replearn.errors import ReplearnError
from replearn.models import ACTIVATIONS, INITS, NORMS

DATASETS = ("mnist", "fashion_mnist", "synthetic")
SCHEDULES = ("none", "cosine", "onecycle")


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ReplearnError(f"{key}={value!r} is invalid: {allowed}")


def _at_least(cfg: DictConfig, key: str, minimum: float, kind: str = "an integer") -> None:
    value = _select(cfg, key)
    if value < minimum:
        _fail(key, value, f"must be {kind} >= {minimum}")


def _positive(cfg: DictConfig, key: str) -> None:
    value = _select(cfg, key)
    if not value > 0:
        _fail(key, value, "must be a number > 0")


def _choice(cfg: DictConfig, key: str, allowed) -> None:
    value = _select(cfg, key)
    if value not in allowed:
        _fail(key, value, f"choose one of {', '.join(allowed)}")


def _select(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def validate_train(cfg: DictConfig) -> None:
    """Check a composed train config; raise ReplearnError with one line on the first problem."""
    _at_least(cfg, "depth", 1)
    _at_least(cfg, "model.depth", 1)
    if cfg.model.name == "mlp":
        _at_least(cfg, "model.width", 1)
    else:
        _at_least(cfg, "model.channels", 1)
        _at_least(cfg, "model.max_channels", cfg.model.channels, "an integer (>= model.channels)")
    _choice(cfg, "model.activation", tuple(ACTIVATIONS))
    _choice(cfg, "model.norm", NORMS)
    _choice(cfg, "model.init", INITS)
    _choice(cfg, "data.name", DATASETS)
    _at_least(cfg, "data.val_size", 0)
    _positive(cfg, "optim.lr")
    _at_least(cfg, "optim.weight_decay", 0, "a number")
    _at_least(cfg, "trainer.epochs", 1)
    _at_least(cfg, "trainer.batch_size", 1)
    _at_least(cfg, "trainer.eval_batch_size", 1)
    _choice(cfg, "trainer.schedule", SCHEDULES)
    smoothing = cfg.trainer.label_smoothing
    if not 0.0 <= smoothing < 1.0:
        _fail("trainer.label_smoothing", smoothing, "must be in [0, 1)")
    _at_least(cfg, "trainer.threads", 0)
    device = str(cfg.device)
    if device != "auto" and not (device == "cpu" or device.startswith("cuda")):
        _fail("device", device, "use auto, cpu, cuda or cuda:N")
    validate_analysis(cfg.analysis)
    if "logger" in cfg:
        validate_logger(cfg.logger)


def validate_bench(cfg: DictConfig) -> None:
    """The train checks plus the benchmark's own keys."""
    validate_train(cfg)
    _choice(cfg, "suite", ("train", "viz", "analysis", "threads", "loggers"))
    _at_least(cfg, "repeats", 1)
    _at_least(cfg, "baseline_batch_size", 1)
