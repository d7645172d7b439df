"""Range and choice checks that OmegaConf's types cannot express.

Each failure is one line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from replearn.conf.analysis import validate_analysis
from replearn.conf.logger import validate_logger
from replearn.errors import ReplearnError
from replearn.guards import check_training

DATASETS = ("mnist", "fashion_mnist", "synthetic", "shapes")
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


def _finite(cfg: DictConfig, key: str) -> None:
    value = _select(cfg, key)
    if not math.isfinite(value):
        _fail(key, value, "must be a finite number")


def _in_unit(cfg: DictConfig, key: str) -> None:
    value = _select(cfg, key)
    if not 0.0 <= value < 1.0:
        _fail(key, value, "must be in [0, 1)")


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
    # lazy: replearn.models imports torch (~1.4 s); composing a config (and --help) must not pay for it
    from replearn.models import ACTIVATIONS, HEADS, INITS, NORMS, REACHES

    _choice(cfg, "model.activation", tuple(ACTIVATIONS))
    _choice(cfg, "model.norm", NORMS)
    _choice(cfg, "model.init", INITS)
    if cfg.model.name == "cnn":
        _choice(cfg, "model.head", HEADS)
        _choice(cfg, "model.reach", REACHES)
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
    _at_least(cfg, "trainer.augment_shift", 0)
    if cfg.trainer.augment_shift > 8:
        _fail("trainer.augment_shift", cfg.trainer.augment_shift,
              "must be at most 8 pixels: a larger shift moves digits out of the image")
    _finite(cfg, "optim.lr")
    _finite(cfg, "optim.weight_decay")
    if cfg.optim.name == "adam":
        _in_unit(cfg, "optim.beta1")
        _in_unit(cfg, "optim.beta2")
    elif cfg.optim.name == "sgd":
        _in_unit(cfg, "optim.momentum")
    if cfg.trainer.schedule == "onecycle":
        warmup = cfg.trainer.warmup_fraction
        if not 0.0 < warmup < 1.0:
            _fail("trainer.warmup_fraction", warmup, "must be in (0, 1): the share of the steps spent warming up")
    for key in ("seed", "data.split_seed", "data.label_shuffle_seed"):
        value = _select(cfg, key)
        if not 0 <= value < 2**63:
            _fail(key, value, "must be an integer in [0, 2**63)")
    if cfg.data.name == "synthetic":
        _at_least(cfg, "data.num_train", 2)
        _at_least(cfg, "data.num_test", 1)
    _validate_shapes(cfg.data)
    device = str(cfg.device)
    if device != "auto" and not (device == "cpu" or device.startswith("cuda")):
        _fail("device", device, "use auto, cpu, cuda or cuda:N")
    validate_analysis(cfg.analysis)
    check_training(cfg)  # last: the memory estimate needs the checked sizes above
    if "logger" in cfg:
        validate_logger(cfg.logger)


def _validate_shapes(data: DictConfig) -> None:
    """data.size / data.labels: only data=shapes has them (the MNIST family is 28 px)."""
    size, labels = data.get("size", 28), data.get("labels", "parts")
    if data.name != "shapes":
        if size != 28 or labels != "parts":
            key, value = ("data.size", size) if size != 28 else ("data.labels", labels)
            _fail(key, value, "only data=shapes has this key (keep 28 / parts, or pass data=shapes)")
        return
    if labels not in ("parts", "strokes"):
        _fail("data.labels", labels, "choose one of parts, strokes (strokes = the twin labelled by stroke statistics)")
    if not isinstance(size, int) or not 8 <= size <= 112:
        _fail("data.size", size, "use an image side from 8 to 112 px (28 like MNIST, 56 for larger shapes images)")


def validate_bench(cfg: DictConfig) -> None:
    """The train checks plus the benchmark's own keys."""
    validate_train(cfg)
    _choice(cfg, "suite", ("train", "viz", "analysis", "dissection", "page", "threads", "loggers", "gpu", "peers"))
    _at_least(cfg, "repeats", 1)
    _at_least(cfg, "baseline_batch_size", 1)


def validate_compare_depth(cfg: DictConfig) -> None:
    """scripts/compare_depth.py: a sweep folder is required."""
    if OmegaConf.is_missing(cfg, "sweep") or not str(cfg.sweep):
        raise ReplearnError("sweep is missing: pass sweep=<multirun folder> (e.g. sweep=multirun/depth_mlp) or sweep=latest")
    _at_least(cfg, "cross_cka_images", 0)


def validate_trace(cfg: DictConfig) -> None:
    """scripts/trace.py: ranges of its options."""
    _at_least(cfg, "image_index", 0)
    _at_least(cfg, "top_units", 1)
