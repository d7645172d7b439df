"""Resource guards: estimate a model's memory from its config, before anything is allocated.

The estimate is arithmetic on the config (parameter count from the layer sizes, activation
floats per sample from the feature-map sizes), so it costs microseconds even for
``depth=1000000``, and a config that cannot fit is refused with one line naming the
override that forces it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from replearn.errors import ReplearnError

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


def _cnn_groups(depth: int, channels: int, max_channels: int, size: int = 28):
    """Runs of identical blocks ``(count, in_ch, out_ch, out_size)``; the same layout as models.cnn_schedule."""
    positions = sorted({0, depth // 3, 2 * depth // 3})
    width, prev, groups = channels, 1, []
    for j, start in enumerate(positions):
        end = positions[j + 1] if j + 1 < len(positions) else depth
        if size > 4:  # a stride-2 block (doubling the channels after the first)
            if start > 0:
                width = min(width * 2, max_channels)
            size = (size + 1) // 2
        groups.append((1, prev, width, size))
        if end - start > 1:
            groups.append((end - start - 1, width, width, size))
        prev = width
    return groups, prev


def estimate(model_cfg: Mapping) -> Estimate:
    """Parameter count and activation floats per sample of the model ``model_cfg`` describes."""
    name = model_cfg.get("name")
    depth = _int(model_cfg, "depth", 3)
    norm = model_cfg.get("norm", "none")
    norm_params = 0 if norm == "none" else 2  # scale and shift per unit/channel
    if name == "mlp":
        width = _int(model_cfg, "width", 256)
        per_unit = (1 if norm == "none" else 0) + norm_params  # bias or norm affine
        params = 784 * width + (depth - 1) * width * width + depth * width * per_unit + width * 10 + 10
        return Estimate(params, depth * width + 10, max(width, 784))
    if name == "cnn":
        channels = _int(model_cfg, "channels", 32)
        max_channels = _int(model_cfg, "max_channels", 128)
        groups, last = _cnn_groups(depth, channels, max_channels)
        params = acts = 0
        largest = 784
        for count, c_in, c_out, size in groups:
            params += count * (c_in * c_out * 9 + c_out * ((1 if norm == "none" else 0) + norm_params))
            acts += count * c_out * size * size
            largest = max(largest, c_out * size * size)
        return Estimate(params + last * 10 + 10, acts + 10, largest)
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
    """Refuse data whose images are not 1x28x28 (valid IDX files of another size); returns ``splits``."""
    shape = tuple(splits.train_x.shape[1:])
    if shape != (1, 28, 28) or tuple(splits.test_x.shape[1:]) != (1, 28, 28):
        size = "x".join(map(str, shape[1:]))
        raise ReplearnError(f"data.name={data_cfg.name} under {data_cfg.get('root')} holds {size} images; replearn's "
                            "models take 28x28 MNIST-format images: point data.root at the original IDX files")
    return splits
