"""Theoretical receptive fields of conv blocks: which input pixels a unit can see.

Unit ``(y, x)`` of a layer with receptive field ``(size, stride, padding_total)``
sees input rows ``y * stride - padding_total`` up to ``+ size`` (exclusive),
and likewise for columns. Conv blocks are composed from their ``nn.Conv2d``
modules in registration order (identity skips never widen the field, so a
residual block counts as its branch). A block holding an ``nn.Linear`` (MLP
blocks, the head after global pooling) sees the whole image.
"""

from __future__ import annotations

from torch import nn

from replearn.errors import ReplearnError
from replearn.recording.hooks import resolve_layers


def _pair_value(value, what: str, module_name: str) -> int:
    if isinstance(value, str):
        raise ReplearnError(f"{module_name} uses padding={value!r}; receptive fields need integer padding")
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ReplearnError(f"{module_name} has non-square {what}={tuple(value)}; receptive fields assume square kernels")
        value = value[0]
    return int(value)


def receptive_fields(model: nn.Module, image_size: int | None = None) -> dict[str, tuple[int, int, int]]:
    """``{layer: (size, stride, padding_total)}`` for ``model.layer_names()`` in forward order.

    Layers whose units see the whole image get ``(image_size, 1, 0)`` so the box of unit (0, 0)
    is the full image.
    """
    return {name: field[:3] for name, field in _fields(model, image_size).items()}


def unit_centres(model: nn.Module, image_size: int | None = None) -> dict[str, tuple[float, int] | None]:
    """``{layer: (centre, stride)}``: where unit 0's receptive field is centred, in pixel coordinates (pixel
    ``i``'s centre at ``i``, the same on both axes), and the pixels between neighbouring units' centres.

    Unit ``y`` is centred at ``centre + y * stride``, with ``centre = (size - 1) / 2 - padding_total``: the
    midpoint of its unclipped box. None for layers whose units see the whole image (no location of their own).
    """
    return {name: None if is_global else ((size - 1) / 2 - pad, stride)
            for name, (size, stride, pad, is_global) in _fields(model, image_size).items()}


def _fields(model: nn.Module, image_size: int | None) -> dict[str, tuple[int, int, int, bool]]:
    if not hasattr(model, "blocks") or not hasattr(model, "layer_names"):
        raise ReplearnError("receptive_fields needs a replearn model (with .blocks and .layer_names())")
    if image_size is None:
        image_size = int(getattr(model, "input_shape", (1, 28, 28))[-1])
    size, stride, pad = 1, 1, 0
    is_global = False
    fields: dict[str, tuple[int, int, int, bool]] = {}
    for i, block in enumerate(model.blocks):
        for sub_name, sub in block.named_modules():
            if isinstance(sub, nn.Linear):
                is_global = True
            elif isinstance(sub, nn.Conv2d) and not is_global:
                where = f"blocks.{i}.{sub_name}"
                k = _pair_value(sub.kernel_size, "kernel_size", where)
                d = _pair_value(sub.dilation, "dilation", where)
                s = _pair_value(sub.stride, "stride", where)
                p = _pair_value(sub.padding, "padding", where)
                # Each step of this layer's kernel moves ``stride`` input pixels of the previous map.
                size += (d * (k - 1)) * stride
                pad += p * stride
                stride *= s
        fields[f"blocks.{i}"] = (image_size, 1, 0, True) if is_global else (size, stride, pad, False)
    # The head follows global pooling (CNN) or a vector (MLP): it sees everything.
    for name in model.layer_names():
        fields.setdefault(name, (image_size, 1, 0, True))
    return {name: fields[name] for name in model.layer_names()}


def receptive_field_box(model: nn.Module, layer: str, y: int, x: int, image_size: int = 28) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the input crop seen by unit ``(y, x)`` of ``layer``.

    ``bottom`` and ``right`` are exclusive (``image[..., top:bottom, left:right]``); the box is
    clipped to the image.
    """
    (name,) = resolve_layers(model, [layer])
    fields = _fields(model, image_size)
    if name not in fields:
        raise ReplearnError(f"no receptive field for {name!r}; choose one of {', '.join(fields)}")
    size, stride, pad, is_global = fields[name]
    if is_global:
        return 0, 0, image_size, image_size
    top, left = int(y) * stride - pad, int(x) * stride - pad
    bottom, right = top + size, left + size
    return max(top, 0), max(left, 0), min(bottom, image_size), min(right, image_size)
