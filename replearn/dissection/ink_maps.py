"""Gradient x input maps kept on each image's ink pixels only: every other pixel of such a map is exactly 0.

An MLP unit's gradient x input map (:mod:`replearn.dissection.maps`) is zero wherever the image has no
ink, about four pixels in five on MNIST. The dissection's two passes read these maps only through
their peaks, the threshold samples and the pixels at or above a threshold, all of which follow from
the ink pixels' values; building the dense (B, U, H, W) maps cost more than computing them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class InkMaps:
    """``values`` (B, U, Q): each unit's map on each image's ``pixels`` (B, Q) (flat indices into ``size``);
    ``valid`` (B, Q) marks real ink pixels (padding entries hold 0); every pixel not listed is 0."""

    values: torch.Tensor
    pixels: torch.Tensor
    valid: torch.Tensor
    size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, U, H, W), the shape of the dense maps."""
        return (self.values.shape[0], self.values.shape[1], *self.size)

    def __getitem__(self, images: slice) -> InkMaps:
        """The maps of a slice of the images."""
        return InkMaps(self.values[images], self.pixels[images], self.valid[images], self.size)

    def dense(self) -> torch.Tensor:
        """(B, U, H, W) the full maps."""
        b, u, q = self.values.shape
        out = torch.zeros(b, self.size[0] * self.size[1], u, dtype=self.values.dtype)
        out[torch.arange(b)[:, None], self.pixels] = (self.values * self.valid[:, None, :]).transpose(1, 2)
        return out.transpose(1, 2).unflatten(2, self.size)

    def peaks(self) -> torch.Tensor:
        """(B, U) each map's largest value, the zeros off the ink included."""
        peak = torch.where(self.valid[:, None, :], self.values, -torch.inf).amax(2)
        off_ink = self.valid.sum(1) < self.size[0] * self.size[1]  # (B,) the image has pixels at exactly 0
        return torch.where(off_ink[:, None], peak.clamp(min=0.0), peak)

    def at(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """(B, U, R, C) the maps at pixel ``rows`` x ``cols``."""
        b, u, _ = self.values.shape
        where = torch.full((self.size[0] * self.size[1],), -1, dtype=torch.int64)
        where[(rows[:, None] * self.size[1] + cols[None, :]).flatten()] = torch.arange(len(rows) * len(cols))
        slot = where[self.pixels]  # (B, Q): each listed pixel's place on the grid, -1 off it
        keep = (slot >= 0) & self.valid
        image, entry = keep.nonzero(as_tuple=True)
        out = torch.zeros(b, len(rows) * len(cols), u, dtype=self.values.dtype)
        out[image, slot[image, entry]] = self.values[image, :, entry]
        return out.transpose(1, 2).unflatten(2, (len(rows), len(cols)))

    def on_pixels(self, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(unit, image, pixel) index vectors of every pixel at or above its unit's threshold (U,)."""
        limit = thresholds.to(self.values.dtype)
        hit = (self.values >= limit[None, :, None]) & self.valid[:, None, :]  # (B, U, Q)
        images, units, entries = hit.nonzero(as_tuple=True)
        pixels = self.pixels[images, entries]
        zero_on = (limit <= 0).nonzero().flatten()  # units whose threshold the off-ink zeros reach too (rare)
        if len(zero_on) == 0:
            return units, images, pixels
        keep = ~torch.isin(units, zero_on)
        dense = self.dense()[:, zero_on].flatten(2) >= limit[zero_on][None, :, None]  # (B, Z, P)
        z_images, z_units, z_pixels = dense.nonzero(as_tuple=True)
        return (torch.cat([units[keep], zero_on[z_units]]), torch.cat([images[keep], z_images]),
                torch.cat([pixels[keep], z_pixels]))
