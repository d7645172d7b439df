"""Resource guards: estimate a model's memory from its config, before anything is allocated.

The estimate is arithmetic on the config (parameter count from the layer sizes, activation
floats per sample from the feature-map sizes), so it costs microseconds even for
``depth=1000000``, and a config that cannot fit is refused with one line naming the
override that forces it.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from replearn.errors import ReplearnError
from replearn.layout import ConvShape, cnn_layout

FLOAT_BYTES = 4
# Training keeps, per parameter, the weight, its gradient and Adam's two moments.
TRAIN_STATE_PER_PARAM = 4
# Per block, autograd keeps the layer output, the normalized output and the activation output.
SAVED_PER_BLOCK = 3
# Refuse above this fraction of the memory that is free now (the rest: data, allocator slack).
MAX_FRACTION = 0.8
FORCE_ENV = "REPLEARN_FORCE_RESOURCES"


@dataclass
class Estimate:
    params: int
    activation_floats: int  # per sample, summed over every block
    largest_floats: int  # per sample, the widest block output

    def training_bytes(self, batch_size: int, eval_batch_size: int, num_images: int) -> int:
        """Weights + gradients + optimizer state, saved activations of one batch, the normalized images."""
        return FLOAT_BYTES * (self.params * TRAIN_STATE_PER_PARAM
                              + SAVED_PER_BLOCK * self.activation_floats * batch_size
                              + 2 * self.largest_floats * eval_batch_size
                              + num_images * 28 * 28)

    def inference_bytes(self, batch_size: int = 2000) -> int:
        """Weights (model and the loaded state dict) and two live block outputs of one batch."""
        return FLOAT_BYTES * (2 * self.params + 2 * self.largest_floats * batch_size)


def _int(model_cfg: Mapping, key: str, default: int) -> int:
    value = model_cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReplearnError(f"model.{key}={value!r} is invalid: must be an integer >= 1")
    return value


def _cnn_blocks(model_cfg: Mapping) -> list[ConvShape]:
    """The conv blocks of the CNN ``model_cfg`` describes (its reach included)."""
    return cnn_layout(_int(model_cfg, "depth", 3), _int(model_cfg, "channels", 32), _int(model_cfg, "max_channels", 128),
                      _int(model_cfg, "image_size", 28), str(model_cfg.get("reach", "grow")))


def _head_inputs(model_cfg: Mapping, blocks: list[ConvShape]) -> int:
    """Features the CNN's head reads: the pooled channels, or the whole last map (``head=flatten``)."""
    last = blocks[-1]
    return last.out_channels * (last.size ** 2 if model_cfg.get("head", "pooled") == "flatten" else 1)


def _pixels(model_cfg: Mapping) -> int:
    """Input pixels per image (the model's ``image_size`` squared; 28 x 28 when the config predates the key)."""
    return _int(model_cfg, "image_size", 28) ** 2


def estimate(model_cfg: Mapping) -> Estimate:
    """Parameter count and activation floats per sample of the model ``model_cfg`` describes."""
    name = model_cfg.get("name")
    depth = _int(model_cfg, "depth", 3)
    norm = model_cfg.get("norm", "none")
    norm_params = 0 if norm == "none" else 2  # scale and shift per unit/channel
    if name == "mlp":
        width = _int(model_cfg, "width", 256)
        per_unit = (1 if norm == "none" else 0) + norm_params  # bias or norm affine
        pixels, classes = _pixels(model_cfg), _int(model_cfg, "num_classes", 10)
        params = pixels * width + (depth - 1) * width * width + depth * width * per_unit + width * classes + classes
        return Estimate(params, depth * width + classes, max(width, pixels))
    if name == "cnn":
        blocks = _cnn_blocks(model_cfg)
        per_channel = (1 if norm == "none" else 0) + norm_params  # conv bias or norm affine
        params = sum(b.in_channels * b.out_channels * b.kernel ** 2 + b.out_channels * per_channel for b in blocks)
        acts = sum(b.out_channels * b.size ** 2 for b in blocks)
        largest = max([_pixels(model_cfg)] + [b.out_channels * b.size ** 2 for b in blocks])
        classes = _int(model_cfg, "num_classes", 10)
        return Estimate(params + _head_inputs(model_cfg, blocks) * classes + classes, acts + classes, largest)
    raise ReplearnError(f"model.name={name!r} is invalid: choose one of cnn, mlp")


def available_bytes(device_type: str = "cpu") -> int | None:
    """Memory free for a new allocation: GPU free memory, or the smaller of MemAvailable and the cgroup limit."""
    if device_type == "cuda":
        import torch  # lazy: the config pre-check runs before torch is imported (~1.4 s)

        return int(torch.cuda.mem_get_info()[0])
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:  # a container's own limit (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = min(free or 1 << 62, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def forced(flag: bool = False) -> bool:
    """True when the user asked to skip the guard (a config flag or ``REPLEARN_FORCE_RESOURCES=1``)."""
    return bool(flag) or os.environ.get(FORCE_ENV, "") not in ("", "0", "false")


def check_memory(needed: int, what: str, device_type: str, override: str) -> None:
    """Raise ReplearnError if ``needed`` bytes exceed the share of free memory a run may take."""
    free = available_bytes(device_type)
    if free is not None and needed > MAX_FRACTION * free:
        raise ReplearnError(f"{what} needs about {_gb(needed)} but only {_gb(free)} is free on {device_type}; "
                            f"use a smaller model or batch, or {override} to try anyway")


def _device_type(device: str) -> str:
    if device == "auto":
        import torch  # lazy: the config pre-check runs before torch is imported (~1.4 s)

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def check_training(cfg) -> Estimate:
    """Refuse a training config that cannot fit in memory (unless ``trainer.force_resources=true``)."""
    est = estimate(cfg.model)
    if forced(cfg.trainer.get("force_resources", False)):
        return est
    data = cfg.data
    images = (data.num_train + data.val_size + data.num_test) if data.name == "synthetic" else 70_000
    needed = est.training_bytes(cfg.trainer.batch_size, cfg.trainer.eval_batch_size, images)
    what = (f"training model={cfg.model.name} depth={cfg.model.depth} ({est.params:,} parameters, "
            f"batch {cfg.trainer.batch_size})")
    check_memory(needed, what, _device_type(str(cfg.device)), "pass trainer.force_resources=true")
    return est


def check_stored_model(model_cfg: Mapping, source: str, device_type: str = "cpu") -> Estimate:
    """Refuse to build the model a checkpoint's stored config describes if it cannot fit (a file can say anything)."""
    est = estimate(model_cfg)
    if not forced():
        what = f"the model stored in {source} ({model_cfg.get('name')} depth={model_cfg.get('depth')}, {est.params:,} parameters)"
        check_memory(est.inference_bytes(), what, device_type, f"set {FORCE_ENV}=1")
    return est


def check_images(splits, data_cfg):
    """Refuse data whose images are not 1 x data.size x data.size (e.g. valid IDX files of another size)."""
    side = int(data_cfg.get("size", 28))
    shape = tuple(splits.train_x.shape[1:])
    if shape != (1, side, side) or tuple(splits.test_x.shape[1:]) != (1, side, side):
        size = "x".join(map(str, shape[1:]))
        raise ReplearnError(f"data.name={data_cfg.name} under {data_cfg.get('root')} holds {size} images; the model "
                            f"takes {side}x{side} images (data.size): point data.root at the original IDX files")
    classes = data_cfg.get("num_classes")
    if classes is not None and len(splits.classes) != int(classes):
        raise ReplearnError(f"data.num_classes={classes} but data.name={data_cfg.name} has {len(splits.classes)} classes; "
                            f"set data.num_classes={len(splits.classes)}")
    return splits


# ------------------------------------------------------------------ files: sizes declared before anything is inflated
def archive_excess(path: str | os.PathLike) -> str | None:
    """Why a torch file's zip cannot be inflated here (it declares more bytes than memory holds), or None if it can.

    ``torch.load`` allocates each zip entry at the uncompressed size its header declares, so a few-MB
    file of deflated zeros can ask for gigabytes (a zip bomb). The declared sizes are read from the
    zip's central directory (nothing is inflated) and summed. A file that is not a zip gives None
    (``torch.load`` then says what it is), and so does ``REPLEARN_FORCE_RESOURCES=1``.
    """
    if forced():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, OverflowError):
        return None
    free = available_bytes("cpu")
    if free is not None and declared > MAX_FRACTION * free:
        return f"it declares {_gb(declared)} of data once inflated but only {_gb(free)} is free"
    return None


def check_archive(path: str | os.PathLike, what: str) -> None:
    """Raise ReplearnError (one line) before loading a torch file whose zip cannot be inflated here (:func:`archive_excess`)."""
    excess = archive_excess(path)
    if excess is not None:
        raise ReplearnError(f"refusing to load {what} {path}: {excess}, so it is damaged or not what it claims; "
                            f"replace it, or set {FORCE_ENV}=1 to load it anyway")


# ------------------------------------------------------------------ visualize.py: the page's memory and act-max time
# Measured (matplotlib Agg, DPI 110, 0.45-inch cells): a top-k figure peaks at about 250 KB per image it shows.
TOPK_BYTES_PER_IMAGE = 256_000
# Per act-max step and run: Adam on the image batch, the rendering and Python (~1 ms measured on one core) ...
ACTMAX_STEP_SECONDS = 1e-3
# ... plus forward and backward (~3 forwards) through the model for each optimized image, at this rate (one core).
ACTMAX_FLOPS_PER_SECOND = 20e9
# Per step, act-max keeps its objective history and the step's random shift: 20 bytes.
ACTMAX_BYTES_PER_STEP = 20
# Refuse a page whose act-max alone is estimated to run longer than this.
MAX_VISUALIZE_SECONDS = 4 * 3600


def forward_flops(model_cfg: Mapping) -> int:
    """Multiply-adds x 2 of one forward pass of one image through the model ``model_cfg`` describes."""
    name = model_cfg.get("name")
    depth = _int(model_cfg, "depth", 3)
    if name == "mlp":
        width = _int(model_cfg, "width", 256)
        return 2 * (_pixels(model_cfg) * width + (depth - 1) * width * width + width * _int(model_cfg, "num_classes", 10))
    blocks = _cnn_blocks(model_cfg)
    classes = _int(model_cfg, "num_classes", 10)
    convs = sum(b.in_channels * b.out_channels * b.kernel ** 2 * b.size ** 2 for b in blocks)
    return 2 * (convs + _head_inputs(model_cfg, blocks) * classes)


def widest_layer(model_cfg: Mapping) -> int:
    """An upper bound on the units (MLP) or channels (CNN) of any hidden layer of the model ``model_cfg`` describes."""
    if model_cfg.get("name") == "mlp":
        return _int(model_cfg, "width", 256)
    return max(_int(model_cfg, "channels", 32), _int(model_cfg, "max_channels", 128))


@dataclass
class PageEstimate:
    bytes: int  # peak: the largest top-k figure plus act-max's per-step records
    seconds: float  # act-max: every prior compared, then every shown hidden layer
    panels: int  # images in the largest top-k figure per unit of k
    actmax_rows: int  # images optimized, summed over every act-max run


def visualize_estimate(opts: Mapping, model_cfg: Mapping, *, test_images: int, classes: int,
                       hidden_layers: int) -> PageEstimate:
    """Memory and act-max time of a visualize.py page, from its options and the run's stored model config.

    ``k`` is capped at the test split's size (as the page does); a hidden layer shows at most ``units``
    units, the head every class. The prior is chosen first by drawing every class prototype under
    each prior compared (``prior=auto``: all five); gaussian and gmm optimize each unit once per
    ``prior_weights`` value, for the model and for its two controls (random init, shuffled labels), which
    are scored under the same priors. Then each of ``hidden_layers`` gets one run (the head reuses its prototypes).
    """
    k = max(1, min(int(opts.get("k", 9)), test_images))
    steps = max(1, int(opts.get("steps", 256)))
    units = max(1, min(int(opts.get("units", 16)), widest_layer(model_cfg)))  # a layer shows at most all its units
    n_weights = max(1, len(opts.get("prior_weights", [1.0]) or [1.0]))
    prior = "fourier" if opts.get("fourier", False) and opts.get("prior", "auto") == "auto" else opts.get("prior", "auto")
    per_unit = n_weights if prior in ("auto", "gaussian", "gmm") else 1
    runs = [classes * (3 + 2 * n_weights if prior == "auto" else per_unit)] * 3 + [units * per_unit] * hidden_layers
    flops = 3 * forward_flops(model_cfg)  # forward and backward
    seconds = sum(steps * (ACTMAX_STEP_SECONDS + rows * flops / ACTMAX_FLOPS_PER_SECOND) for rows in runs)
    panels = max(units, classes)
    return PageEstimate(TOPK_BYTES_PER_IMAGE * panels * k + ACTMAX_BYTES_PER_STEP * steps, seconds, panels, sum(runs))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:,.0f} hours" if seconds < 240 * 3600 else f"{seconds / 86400:,.0f} days"


def check_visualize(opts: Mapping, model_cfg: Mapping, *, test_images: int, classes: int,
                    hidden_layers: int) -> PageEstimate:
    """Refuse visualize options (``k``, ``units``, ``steps``) whose page cannot fit in memory or would run for hours.

    ``force_resources=true`` or ``REPLEARN_FORCE_RESOURCES=1`` draws it anyway.
    """
    est = visualize_estimate(opts, model_cfg, test_images=test_images, classes=classes, hidden_layers=hidden_layers)
    if forced(opts.get("force_resources", False)):
        return est
    force = f"or pass force_resources=true (or set {FORCE_ENV}=1) to try anyway"
    k, units, steps = int(opts.get("k", 9)), int(opts.get("units", 16)), int(opts.get("steps", 256))
    if est.seconds > MAX_VISUALIZE_SECONDS:
        fit = max(1, math.floor(steps * MAX_VISUALIZE_SECONDS / est.seconds))
        raise ReplearnError(f"steps={steps} would take about {_duration(est.seconds)} of act-max ({est.actmax_rows:,} "
                            f"images optimized for {steps:,} steps each); use steps<={fit}, {force}")
    free = available_bytes("cpu")
    if free is not None and est.bytes > MAX_FRACTION * free:
        images = est.panels * min(k, test_images)
        fit = int((MAX_FRACTION * free - ACTMAX_BYTES_PER_STEP * steps) // (TOPK_BYTES_PER_IMAGE * est.panels))
        advice = f"use k<={fit}" if fit >= 1 else "use fewer units or steps"
        parts = f"{_gb(TOPK_BYTES_PER_IMAGE * images)} for a top-k figure of {images:,} images"
        if ACTMAX_BYTES_PER_STEP * steps >= 1e6:
            parts += f", {_gb(ACTMAX_BYTES_PER_STEP * steps)} for act-max's {steps:,} steps"
        raise ReplearnError(f"k={k} units={units} steps={steps} need about {_gb(est.bytes)} ({parts}) but only "
                            f"{_gb(free)} is free; {advice}, {force}")
    return est
