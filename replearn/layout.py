"""The CNN's block layout, without torch: the models build it, and the config checks estimate from it before torch loads."""

from __future__ import annotations

from dataclasses import dataclass


def cnn_schedule(depth: int, channels: int, max_channels: int, image_size: int = 28) -> list[tuple[int, int]]:
    """(out_channels, stride) per block.

    Up to three stride-2 blocks, at positions 0, depth//3 and 2*depth//3 (28 -> 14 -> 7 -> 4),
    so every depth ends on a small map. Channels double at each downsampling after the first,
    up to ``max_channels``: the cost per block stays roughly flat while the pooled feature the
    head sees gets wide (128 for the default depth 4, 64 if only two downsamplings fit).
    Valid for any depth >= 1.
    """
    downsample_at = {0, depth // 3, 2 * depth // 3}
    schedule, width, size = [], channels, image_size
    for i in range(depth):
        stride = 2 if i in downsample_at and size > 4 else 1
        if stride == 2:
            if i > 0:
                width = min(width * 2, max_channels)
            size = (size + 1) // 2
        schedule.append((width, stride))
    return schedule


def cover_kernel(depth: int, image_size: int = 28) -> int:
    """The smallest odd first-block kernel with which one unit of the last block sees every pixel of the image.

    Blocks 1.. keep their 3x3 kernels and the strides of :func:`cnn_schedule`, so map sizes and
    channels are those of the 3x3 net; only the first block, with one input channel, grows: the extra
    weights are (k^2 - 9) x its channels. A field as wide as the image is not enough: its units sit
    ``stride`` px apart, so the one nearest the centre can miss an edge row (depth 4 at 28 px: 31 px wide).
    """
    strides = [stride for _, stride in cnn_schedule(depth, 1, 1, image_size)]
    side = image_size
    for stride in strides:
        side = (side + 1) // 2 if stride == 2 else side  # the last map's side (odd kernels, "same" padding)
    kernel = 3
    while True:
        # (size, spacing, padding) of the last block's field, as replearn.recording.receptive_field composes it
        size, spacing, pad = kernel, strides[0], kernel // 2
        for stride in strides[1:]:
            size, pad, spacing = size + 2 * spacing, pad + spacing, spacing * stride
        if any(y * spacing - pad <= 0 and y * spacing - pad + size >= image_size for y in range(side)):
            return kernel
        kernel += 2


@dataclass(frozen=True)
class ConvShape:
    """One conv block: ``in_channels`` -> ``out_channels`` with a ``kernel`` x ``kernel`` kernel, output ``size`` x ``size``."""

    in_channels: int
    out_channels: int
    kernel: int
    size: int


def cnn_layout(depth: int, channels: int, max_channels: int, image_size: int = 28, reach: str = "grow",
               in_channels: int = 1) -> list[ConvShape]:
    """Every conv block of the CNN these arguments build (``reach="cover"`` widens the first kernel)."""
    first_kernel = cover_kernel(depth, image_size) if reach == "cover" else 3
    blocks, prev, size = [], in_channels, image_size
    for i, (out, stride) in enumerate(cnn_schedule(depth, channels, max_channels, image_size)):
        size = (size + 1) // 2 if stride == 2 else size
        blocks.append(ConvShape(prev, out, first_kernel if i == 0 else 3, size))
        prev = out
    return blocks
