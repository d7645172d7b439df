"""Top-k dataset examples per unit, streamed with bounded memory, and their receptive-field crops.

Ties are broken by dataset index (lower first) and, inside a conv map, by the
first maximal position in row-major order, so results never depend on the
batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from replearn.errors import ReplearnError
from replearn.recording.hooks import (
    check_images,
    forward_until,
    model_device,
    prepare_batch,
    record_activations,
    resolve_layers,
)
from replearn.recording.receptive_field import receptive_field_box, receptive_fields


@dataclass
class TopK:
    """``values``/``indices`` (U, k), descending; ``positions`` (U, k, 2) = (y, x) of each max for conv maps."""

    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor | None = None


def _unit_scores(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(U, N) scores and, for maps, (U, N, 2) argmax positions from (N, U) or (N, C, H, W)."""
    if acts.dim() == 2:
        return acts.t(), None
    if acts.dim() != 4:
        raise ReplearnError(f"activations must be (N, U) or (N, C, H, W), got shape {tuple(acts.shape)}")
    n, c, h, w = acts.shape
    flat = acts.reshape(n, c, h * w)
    where = flat.argmax(2)  # (N, C); argmax returns the first maximal position
    best = flat.gather(2, where.unsqueeze(2)).squeeze(2)  # (N, C)
    pos = torch.stack((where // w, where % w), dim=2)  # (N, C, 2)
    return best.t(), pos.transpose(0, 1)


def _merge(values, indices, positions, new_values, new_indices, new_positions, k: int):
    """Keep the k largest of old + new per unit; stable sort keeps lower (earlier) dataset indices first on ties."""
    if values is not None:
        new_values = torch.cat((values, new_values), 1)
        new_indices = torch.cat((indices, new_indices), 1)
        if new_positions is not None:
            new_positions = torch.cat((positions, new_positions), 1)
    order = torch.sort(new_values, dim=1, descending=True, stable=True).indices[:, :k]  # (U, k)
    kept_pos = None
    if new_positions is not None:
        kept_pos = new_positions.gather(1, order.unsqueeze(2).expand(-1, -1, 2))
    return new_values.gather(1, order), new_indices.gather(1, order), kept_pos


def _check_k(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise ReplearnError(f"k={k} is invalid for {n} examples; use 1 <= k <= {n}")


def top_k_examples(activations: torch.Tensor, k: int = 9) -> TopK:
    """Top-k examples per unit of in-memory ``activations`` (N, U) or (N, C, H, W) (channel max over space)."""
    _check_k(k, activations.shape[0] if activations.dim() else 0)
    scores, pos = _unit_scores(activations.detach())
    idx = torch.arange(activations.shape[0], device=scores.device).expand_as(scores)
    values, indices, positions = _merge(None, None, None, scores, idx, pos, k)
    return TopK(values, indices, positions)


def top_k_for_layer(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    k: int = 9,
    normalize: Callable | None = None,
    batch_size: int = 1000,
    units: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> TopK:
    """Stream ``images`` through ``model`` and keep a running top-k per unit of ``layer`` (CPU results).

    Memory stays at one batch of activations plus (U, k) buffers. ``units`` picks
    channels/units (default all); results follow that order.
    """
    (name,) = resolve_layers(model, [layer])
    check_images(images)
    _check_k(k, images.shape[0])
    if batch_size < 1:
        raise ReplearnError(f"batch_size={batch_size} is invalid; use a positive number")
    device = torch.device(device) if device is not None else model_device(model)
    values = indices = positions = None
    pick = None
    was_training = model.training
    model.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            stop = min(start + batch_size, images.shape[0])
            with torch.inference_mode():
                out = forward_until(model, name, prepare_batch(images[start:stop], normalize, device))
            if pick is None:
                pick = _check_units(units, out.shape[1], name)
            scores, pos = _unit_scores(out[:, pick].float().cpu())
            idx = torch.arange(start, stop).expand_as(scores)
            values, indices, positions = _merge(values, indices, positions, scores, idx, pos, k)
    finally:
        model.train(was_training)
    return TopK(values, indices, positions)


def top_k_for_layers(
    model: nn.Module,
    layers: Sequence[str],
    images: torch.Tensor,
    k: int = 9,
    normalize: Callable | None = None,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
) -> dict[str, TopK]:
    """:func:`top_k_for_layer` for every unit of several ``layers`` in one pass over ``images`` (the same results):
    one forward per batch instead of one per layer and batch."""
    names = resolve_layers(model, layers)
    check_images(images)
    _check_k(k, images.shape[0])
    if batch_size < 1:
        raise ReplearnError(f"batch_size={batch_size} is invalid; use a positive number")
    device = torch.device(device) if device is not None else model_device(model)
    merged: dict[str, tuple] = {name: (None, None, None) for name in names}
    was_training = model.training
    model.eval()
    try:
        with record_activations(model, names) as acts:
            for start in range(0, images.shape[0], batch_size):
                stop = min(start + batch_size, images.shape[0])
                with torch.inference_mode():
                    model(prepare_batch(images[start:stop], normalize, device))
                for name in names:
                    scores, pos = _unit_scores(acts[name].float().cpu())
                    idx = torch.arange(start, stop).expand_as(scores)
                    merged[name] = _merge(*merged[name], scores, idx, pos, k)
    finally:
        model.train(was_training)
    return {name: TopK(*merged[name]) for name in names}


def _check_units(units, n_units: int, layer: str) -> torch.Tensor:
    if units is None:
        return torch.arange(n_units)
    pick = torch.as_tensor(list(units), dtype=torch.long)
    if pick.numel() == 0 or pick.dim() != 1 or int(pick.min()) < 0 or int(pick.max()) >= n_units:
        raise ReplearnError(f"units={list(units)} is invalid for {layer} with {n_units} units; use indices in 0..{n_units - 1}")
    return pick


def crop_receptive_fields(
    images: torch.Tensor, topk: TopK, model: nn.Module, layer: str, pad_to: int | None = None, fill: float = 0
) -> torch.Tensor:
    """Crops ``(U, k, C, h, w)`` of each top example around its max's receptive field.

    Crops clipped by the image border are padded with ``fill`` on the clipped side,
    so the unit's centre stays at the crop centre; all crops share one size
    (``pad_to`` or the receptive field, at most the image). Vector layers give whole images.
    """
    check_images(images)
    if topk.positions is None:
        return images[topk.indices]  # (U, k, C, H, W)
    _, c, height, width = images.shape
    if height != width:
        raise ReplearnError(f"crop_receptive_fields needs square images, got {height}x{width}")
    size, stride, pad = receptive_fields(model, height)[resolve_layers(model, [layer])[0]]
    base = min(size, height)
    side = base if pad_to is None else int(pad_to)
    if side < base:
        raise ReplearnError(f"pad_to={pad_to} is smaller than the {base}px receptive field of {layer}; use pad_to >= {base}")
    shift = (side - base) // 2
    u, k = topk.indices.shape
    out = torch.full((u, k, c, side, side), fill, dtype=images.dtype)
    for i in range(u):
        for j in range(k):
            y, x = (int(v) for v in topk.positions[i, j])
            top, left, bottom, right = receptive_field_box(model, layer, y, x, image_size=height)
            # Offset inside the canvas = pixels cut off at the top/left border (bounded when the field exceeds the image).
            oy = min(max(top - (y * stride - pad), 0), base - (bottom - top)) + shift
            ox = min(max(left - (x * stride - pad), 0), base - (right - left)) + shift
            crop = images[int(topk.indices[i, j]), :, top:bottom, left:right]
            out[i, j, :, oy:oy + crop.shape[1], ox:ox + crop.shape[2]] = crop
    return out
