"""A reference classifier per dataset, for judging act-max prototypes: a LeNet-5-style net, trained once, cached.

Its architecture (5x5 convolutions, max pooling, tanh, fully connected head) differs
from both replearn models (the ReLU MLP and the 3x3 stride-2 CNN with global
pooling), so it shares fewer of their adversarial directions. It is trained on
the training split with random shifts of up to 2 pixels and is cached per dataset
in the per-user cache (:mod:`replearn.cache`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from replearn.cache import cached, content_key
from replearn.device import single_thread
from replearn.errors import ReplearnError

REFERENCE_VERSION = 1


class LeNet(nn.Module):
    """conv5(6) -> maxpool -> conv5(16) -> maxpool -> 120 -> 84 -> classes, tanh; takes pixels in [0, 1]."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((image_size // 2) - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W) pixels in [0, 1]
        x = F.max_pool2d(torch.tanh(self.conv1(x - 0.5)), 2)
        x = F.max_pool2d(torch.tanh(self.conv2(x)), 2)
        x = torch.tanh(self.fc1(x.flatten(1)))
        return self.fc3(torch.tanh(self.fc2(x)))


def _shift(x: torch.Tensor, gen: torch.Generator, pixels: int = 2) -> torch.Tensor:
    dy, dx = torch.randint(-pixels, pixels + 1, (2,), generator=gen).tolist()
    return torch.roll(x, (dy, dx), dims=(2, 3))


def train_reference(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 3,
                    batch_size: int = 128, seed: int = 0) -> LeNet:
    """Train a :class:`LeNet` on uint8 images (N, C, H, W) with Adam; returns it in eval mode (CPU)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    c, h, _ = images.shape[1:]
    net = LeNet(c, num_classes, h)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    n = len(images)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x = _shift(images.index_select(0, idx).float() / 255.0, gen)  # (B, C, H, W)
            loss = F.cross_entropy(net(x), labels.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def load_reference(splits, seed: int = 0, epochs: int = 3, use_cache: bool = True) -> LeNet:
    """The reference classifier for ``splits`` (uint8 ``train_x``/``train_y``), from the cache or trained once."""
    images, labels = splits.train_x.cpu(), splits.train_y.cpu().long()
    num_classes = len(getattr(splits, "classes", [])) or int(labels.max()) + 1
    c, h, w = images.shape[1:]
    if h != w:
        raise ReplearnError(f"the reference classifier needs square images, got {h}x{w}")
    stride = max(1, len(images) // 2000)
    key = content_key(splits.name, tuple(images.shape), images[::stride], labels, seed, epochs, REFERENCE_VERSION)

    def build() -> dict:
        with single_thread():
            net = train_reference(images, labels, num_classes, epochs=epochs, seed=seed)
        return {"state": net.state_dict(), "shape": [c, h, w], "classes": num_classes, "version": REFERENCE_VERSION}

    def validate(payload: dict) -> None:
        if payload.get("version") != REFERENCE_VERSION or list(payload.get("shape", [])) != [c, h, w] \
                or payload.get("classes") != num_classes:
            raise ValueError("trained for other data or by another version")
        state = payload.get("state")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) and v.is_floating_point()
                                                  for v in state.values()):
            raise ValueError("the weights are not a state dict of float tensors")
        if not all(bool(torch.isfinite(v).all()) for v in state.values()):
            raise ValueError("the weights hold NaN or infinite values")
        LeNet(c, num_classes, h).load_state_dict(state)  # names and shapes

    payload = cached("reference_classifiers", key, build, validate, use_cache=use_cache)
    net = LeNet(c, num_classes, h)
    net.load_state_dict(payload["state"])
    return net.eval()
