"""Variable-depth MLPs and small CNNs whose blocks have stable dotted names.

Every model exposes the same small interface used by recording, probing and
visualization:

- ``model.hidden_layers()``: names of the hidden blocks in forward order
  (``["blocks.0", "blocks.1", ...]``), each a ``named_modules()`` path;
- ``model.layer_names()``: the hidden blocks followed by ``"head"`` (logits);
- ``model.input_shape``: ``(C, H, W)`` of one input image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from replearn.layout import cnn_schedule, cover_kernel

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
NORMS = ("none", "batchnorm", "layernorm")
INITS = ("he", "xavier", "default")
# CNN heads: global average pool then linear, or linear on the last map with its layout kept.
HEADS = ("pooled", "flatten")
# CNN reach: 3x3 kernels throughout (the field grows with depth), or a first kernel wide enough that
# the last block's field covers the image at every depth (see replearn.layout.cover_kernel).
REACHES = ("grow", "cover")
__all__ = ["CNN", "MLP", "build_model", "build_model_from_config", "cnn_schedule", "count_parameters", "cover_kernel"]


def _check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(allowed)}")


class LayeredModel(nn.Module):
    """Base class: a stack of named blocks followed by a linear ``head``."""

    blocks: nn.Sequential
    head: nn.Linear
    input_shape: tuple[int, int, int]

    def hidden_layers(self) -> list[str]:
        """Names of the hidden blocks in forward order."""
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def layer_names(self) -> list[str]:
        """Hidden blocks then the logits layer, in forward order."""
        return self.hidden_layers() + ["head"]

    @property
    def training_memory_format(self) -> torch.memory_format:
        """Layout of weights and batches while training: contiguous for vectors, channels-last for conv maps."""
        return torch.contiguous_format


class MLPBlock(nn.Module):
    """Linear -> optional norm -> activation, with an optional identity skip."""

    def __init__(self, in_features: int, out_features: int, activation: str, norm: str, residual: bool):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=norm == "none")
        if norm == "batchnorm":
            self.norm = nn.BatchNorm1d(out_features)
        elif norm == "layernorm":
            self.norm = nn.LayerNorm(out_features)
        else:
            self.norm = nn.Identity()
        self.act = ACTIVATIONS[activation]()
        # A skip needs matching shapes; the first block (784 -> width) stays plain.
        self.residual = residual and in_features == out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm(self.linear(x)))
        return x + out if self.residual else out


class MLP(LayeredModel):
    """``depth`` hidden layers of ``width`` units on flattened images, then a linear head."""

    def __init__(
        self,
        depth: int = 3,
        width: int = 256,
        activation: str = "relu",
        norm: str = "none",
        residual: bool = False,
        init: str = "he",
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth={depth} is invalid; an MLP needs at least 1 hidden layer")
        if width < 1:
            raise ValueError(f"width={width} is invalid; use a positive number of units")
        _check_choice("activation", activation, tuple(ACTIVATIONS))
        _check_choice("norm", norm, NORMS)
        _check_choice("init", init, INITS)
        self.input_shape = (in_channels, image_size, image_size)
        in_features = in_channels * image_size * image_size
        self.flatten = nn.Flatten()
        self.blocks = nn.Sequential(
            *[
                MLPBlock(in_features if i == 0 else width, width, activation, norm, residual)
                for i in range(depth)
            ]
        )
        self.head = nn.Linear(width, num_classes)
        init_weights(self, init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        return self.head(self.blocks(self.flatten(x)))


class ConvBlock(nn.Module):
    """kxk conv (3x3 unless told; stride 1 or 2, "same" padding) -> optional norm -> activation, optional identity skip."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str, norm: str, residual: bool,
                 kernel_size: int = 3):
        super().__init__()
        # Odd kernels with padding k // 2 give every kernel size the same map sizes (28 -> 14 -> 7 -> 4).
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              bias=norm == "none")
        if norm == "batchnorm":
            self.norm = nn.BatchNorm2d(out_channels)
        elif norm == "layernorm":
            # GroupNorm with one group normalizes over (C, H, W) per sample: LayerNorm for maps.
            self.norm = nn.GroupNorm(1, out_channels)
        else:
            self.norm = nn.Identity()
        self.act = ACTIVATIONS[activation]()
        self.residual = residual and stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm(self.conv(x)))
        return x + out if self.residual else out


class CNN(LayeredModel):
    """``depth`` conv blocks, then a linear head on the globally pooled map (``head="pooled"``) or on the whole map
    (``head="flatten"``); ``reach="cover"`` widens the first kernel so the last block sees the whole image."""

    def __init__(
        self,
        depth: int = 4,
        channels: int = 32,
        max_channels: int = 128,
        activation: str = "relu",
        norm: str = "batchnorm",
        residual: bool = False,
        init: str = "he",
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        head: str = "pooled",
        reach: str = "grow",
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth={depth} is invalid; a CNN needs at least 1 conv block")
        if channels < 1 or max_channels < channels:
            raise ValueError(f"channels={channels}, max_channels={max_channels} are invalid; need 1 <= channels <= max_channels")
        _check_choice("activation", activation, tuple(ACTIVATIONS))
        _check_choice("norm", norm, NORMS)
        _check_choice("init", init, INITS)
        _check_choice("head", head, HEADS)
        _check_choice("reach", reach, REACHES)
        self.input_shape = (in_channels, image_size, image_size)
        blocks, prev, size = [], in_channels, image_size
        first_kernel = cover_kernel(depth, image_size) if reach == "cover" else 3
        for i, (out, stride) in enumerate(cnn_schedule(depth, channels, max_channels, image_size)):
            blocks.append(ConvBlock(prev, out, stride, activation, norm, residual, first_kernel if i == 0 else 3))
            prev, size = out, (size + 1) // 2 if stride == 2 else size
        self.blocks = nn.Sequential(*blocks)
        # flatten: one weight per (channel, y, x) of the last map, so the head can read where a feature is.
        self.pool = nn.AdaptiveAvgPool2d(1) if head == "pooled" else nn.Identity()
        self.flatten = nn.Flatten()
        self.head = nn.Linear(prev if head == "pooled" else prev * size * size, num_classes)
        init_weights(self, init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        # blocks: (B, C', h, w); pool: (B, C', 1, 1) or unchanged; flatten: (B, C') or (B, C' * h * w)
        return self.head(self.flatten(self.pool(self.blocks(x))))

    @property
    def training_memory_format(self) -> torch.memory_format:
        # oneDNN's convolutions and batch norm skip layout reorders on channels-last tensors: a depth-4
        # training step took 0.83x the time of the contiguous one on 2 CPU threads (0.87x on 1, 0.80x
        # at depth 8); cuDNN prefers it too with bf16.
        return torch.channels_last


def init_weights(model: LayeredModel, init: str, activation: str) -> None:
    """He-normal (fan-in) for ReLU-family nets keeps signal and gradient scale constant with depth.

    PyTorch's default Linear init shrinks activations by ~1/sqrt(3) per ReLU layer,
    so the first-layer gradient of a depth-20 plain ReLU MLP is ~1e-6 of the last one's.
    """
    if init == "default":
        return
    gain = nn.init.calculate_gain("relu" if activation in ("relu", "gelu") else activation)
    n_residual = sum(1 for block in model.blocks if block.residual)
    for block in model.blocks:
        layer = block.linear if isinstance(block, MLPBlock) else block.conv
        if init == "he":
            fan_in = nn.init._calculate_correct_fan(layer.weight, "fan_in")
            std = gain / math.sqrt(fan_in)
            if block.residual:
                # Each skip adds the branch's variance; shrinking branches by sqrt(#skips)
                # keeps the sum O(1) even at depth 100.
                std /= math.sqrt(n_residual)
            nn.init.normal_(layer.weight, std=std)
        else:
            nn.init.xavier_normal_(layer.weight, gain=gain)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    # A small head keeps the initial logits near zero (near-uniform predictions).
    nn.init.normal_(model.head.weight, std=0.5 / math.sqrt(model.head.in_features))
    nn.init.zeros_(model.head.bias)


MODELS = {"mlp": MLP, "cnn": CNN}


def build_model(name: str, **kwargs) -> LayeredModel:
    """Construct a model by its config name (``mlp`` or ``cnn``)."""
    _check_choice("model", name, tuple(MODELS))
    return MODELS[name](**kwargs)


def model_kwargs(model_cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A ``model`` config section as ``build_model`` arguments: config keys equal constructor arguments."""
    if isinstance(model_cfg, DictConfig):
        return OmegaConf.to_container(model_cfg, resolve=True)  # type: ignore[return-value]
    return dict(model_cfg)


def build_model_from_config(model_cfg: DictConfig | Mapping[str, Any]) -> LayeredModel:
    """The model a run's ``model`` config section describes (``name`` picks the class), freshly initialised."""
    return build_model(**model_kwargs(model_cfg))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
