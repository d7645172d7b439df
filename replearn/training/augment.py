"""Random translations of whole batches, done on the tensors already on the training device."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_shifts(count: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """``(count, 2)`` integer offsets (dy, dx), each uniform in ``[-max_shift, max_shift]``.

    Drawn from the run's shuffle generator (on CPU) so that a resumed run draws exactly the same shifts.
    """
    return torch.randint(-max_shift, max_shift + 1, (count, 2), generator=generator)


def shift_images(images: torch.Tensor, shifts: torch.Tensor, fill: float) -> torch.Tensor:
    """Translate each image by its own (dy, dx); pixels shifted in take the value ``fill``.

    ``images`` (B, C, H, W), ``shifts`` (B, 2) on the same device. One pad and one gather: about
    0.1 ms for a batch of 128 MNIST digits, where a loop over samples would cost milliseconds.
    """
    batch, channels, height, width = images.shape
    pad = int(shifts.abs().max()) if len(shifts) else 0
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad), value=fill)  # (B, C, H + 2p, W + 2p)
    # A positive dy moves the digit down: output row r reads padded row r + pad - dy.
    rows = torch.arange(height, device=images.device) + pad - shifts[:, :1]  # (B, H)
    cols = torch.arange(width, device=images.device) + pad - shifts[:, 1:]  # (B, W)
    flat = padded.flatten(2)  # (B, C, (H + 2p) * (W + 2p))
    index = (rows[:, :, None] * (width + 2 * pad) + cols[:, None, :]).flatten(1)  # (B, H * W)
    out = flat.gather(2, index[:, None, :].expand(batch, channels, -1))
    return out.view(batch, channels, height, width)
