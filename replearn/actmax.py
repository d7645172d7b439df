"""Activation maximization for 1-channel 28x28 models: gradient ascent on the input, all units at once.

Each requested unit owns one image of the batch (batch index = unit). The
objective of unit ``u`` is the spatial mean of channel ``u`` for conv maps
(every position counts, so the image is not tied to the map's centre), the
activation of unit ``u`` for vector layers, and logit ``u`` for ``head``.
Images live in the model's normalized input space and are kept inside the
range of valid pixels by a sigmoid: ``image = lo + (hi - lo) * sigmoid(z)``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from replearn.errors import ReplearnError
from replearn.recording import forward_until, model_device, resolve_layers

PARAMS = ("pixel", "fourier")


@dataclass
class ActMaxResult:
    """``images`` (U, 1, H, W) normalized inputs; objectives (U,) before/after; mean objective per step."""

    images: torch.Tensor
    objective_start: torch.Tensor
    objective_end: torch.Tensor
    objective_history: torch.Tensor
    units: list[int] = field(default_factory=list)
    layer: str = ""


def _objective(out: torch.Tensor, units: torch.Tensor, layer: str) -> torch.Tensor:
    rows = torch.arange(len(units), device=out.device)
    if out.dim() == 4:
        return out[rows, units].mean((1, 2))  # (U,) spatial mean of each unit's own channel
    if out.dim() == 2:
        return out[rows, units]
    raise ReplearnError(f"layer {layer} outputs shape {tuple(out.shape)}; act-max needs (B, D) or (B, C, H, W)")


def _total_variation(img: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, per image: (U,)."""
    dy = (img[:, :, 1:, :] - img[:, :, :-1, :]).pow(2).mean((1, 2, 3))
    dx = (img[:, :, :, 1:] - img[:, :, :, :-1]).pow(2).mean((1, 2, 3))
    return dy + dx


def _fourier_scale(h: int, w: int, decay_power: float, device) -> torch.Tensor:
    """1/frequency^p weights for rfft2 coefficients, RMS 1, so Adam steps move all frequencies evenly in the image."""
    fy = torch.fft.fftfreq(h, device=device).view(h, 1)
    fx = torch.fft.rfftfreq(w, device=device).view(1, w // 2 + 1)
    freq = torch.sqrt(fy**2 + fx**2).clamp(min=1.0 / max(h, w))
    scale = freq.pow(-decay_power)
    return scale / scale.pow(2).mean().sqrt()  # (H, W//2+1)


class _RedirectedReLUFn(torch.autograd.Function):
    """ReLU whose backward also lets through, at inputs <= 0, gradients that would raise the input.

    A unit whose ReLU is off has zero gradient and can never come back; redirecting
    gradients for the first steps revives it (a trick from Lucid's feature visualization).
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # The loss is minimized, so a negative grad means "increase this input".
        return torch.where((x > 0) | (grad < 0), grad, torch.zeros_like(grad))


class _SwitchableReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.redirect = True

    def forward(self, x):
        return _RedirectedReLUFn.apply(x) if self.redirect else torch.relu(x)


def _fast_copy(model: nn.Module, device: torch.device, layer: str) -> nn.Module:
    """Eval-mode copy without parameter grads, eval BatchNorm folded into the preceding conv/linear.

    Folding removes the BatchNorm forward/backward from every ascent step (numerically the
    same function up to float rounding); working on a copy leaves the caller's model untouched.
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    for module in fast.modules():
        lin = getattr(module, "conv", None)
        lin = getattr(module, "linear", None) if lin is None else lin
        norm = getattr(module, "norm", None)
        if isinstance(lin, (nn.Conv2d, nn.Linear)) and isinstance(norm, nn.modules.batchnorm._BatchNorm) \
                and norm.track_running_stats and norm.running_var is not None:
            gain = norm.running_var.add(norm.eps).rsqrt()
            if norm.weight is not None:
                gain = gain * norm.weight
            bias = lin.bias if lin.bias is not None else torch.zeros_like(norm.running_mean)
            new_bias = (bias - norm.running_mean) * gain + (norm.bias if norm.bias is not None else 0)
            lin.weight.mul_(gain.view(-1, *([1] * (lin.weight.dim() - 1))))
            lin.bias = nn.Parameter(new_bias, requires_grad=False)
            module.norm = nn.Identity()
    # Only the target layer's own ReLUs are redirected: redirecting every ReLU of a deep net sends
    # gradient through paths that do not reach the unit, and the objective fell (measured).
    for module in list(dict(fast.named_modules())[layer].modules()):
        for child_name, child in module.named_children():
            if type(child) is nn.ReLU:
                setattr(module, child_name, _SwitchableReLU())
    if device.type == "cpu":
        # oneDNN's channels-last conv backward is several times faster on CPU than the NCHW path.
        fast.to(memory_format=torch.channels_last)
    return fast


def maximize_activations(
    model: nn.Module,
    layer: str,
    units: Sequence[int] | None = None,
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    jitter: int | None = None,
    tv_weight: float = 0.05,
    l2_weight: float = 0.001,
    redirect_fraction: float = 0.5,
    param: str = "pixel",
    decay_power: float = 1.0,
    progress: bool = True,
    device: torch.device | str | None = None,
    mean: float = 0.1307,
    std: float = 0.3081,
    value_range: tuple[float, float] | None = None,
) -> ActMaxResult:
    """Optimize one input per unit of ``layer`` to maximize it; returns a CPU :class:`ActMaxResult`.

    Loss per image: ``-objective + tv_weight * TV + l2_weight * mean(x^2)``. Each
    step rolls the batch by a seeded random shift of up to ``jitter`` pixels (default: 1 for
    conv nets, 0 for MLPs, which are not shift-invariant).
    ``param="fourier"`` learns rfft2 coefficients scaled by 1/frequency^``decay_power``
    (decorrelated, smoother images). During the first ``redirect_fraction`` of the steps, the target
    layer's ReLUs pass gradients that would switch them on, so units that start dead still move. ``value_range`` defaults to pixels 0..255
    normalized by ``mean``/``std``. Same seed and threads -> bitwise same result on CPU.
    Gradients flow through an eval-mode copy with BatchNorm folded in; the model itself is only
    switched to eval (and back) for the reported objectives. It must live on ``device``.
    """
    (name,) = resolve_layers(model, [layer])
    if param not in PARAMS:
        raise ReplearnError(f"param={param!r} is invalid; use one of {', '.join(PARAMS)}")
    if jitter is None:
        # Rolling an image is a natural nuisance only for convolutions; an MLP sees a different
        # input at every shift and its units barely rise (measured), so MLPs get no jitter. One
        # pixel is already 1/28 of an MNIST digit: 2 px kept 40% of random-CNN channels from rising.
        jitter = 1 if any(isinstance(m, nn.Conv2d) for m in model.modules()) else 0
    if steps < 1 or lr <= 0 or jitter < 0:
        raise ReplearnError(f"steps={steps}, lr={lr}, jitter={jitter} are invalid; need steps >= 1, lr > 0, jitter >= 0")
    lo, hi = value_range if value_range is not None else ((0.0 - mean) / std, (1.0 - mean) / std)
    if not hi > lo:
        raise ReplearnError(f"value_range=({lo}, {hi}) is empty; pass (low, high) with high > low")
    device = torch.device(device) if device is not None else model_device(model)
    if model_device(model).type != device.type:
        raise ReplearnError(f"the model is on {model_device(model)} but device={device}; move it with model.to(device)")
    c, h, w = getattr(model, "input_shape", (1, 28, 28))

    was_training = model.training
    model.eval()
    try:
        fast = _fast_copy(model, device, name)
        with torch.no_grad():
            n_units = forward_until(model, name, torch.zeros(1, c, h, w, device=device)).shape[1]
        pick = list(range(n_units)) if units is None else [int(u) for u in units]
        if not pick or min(pick) < 0 or max(pick) >= n_units:
            raise ReplearnError(f"units={pick} is invalid for {name} with {n_units} units; use indices in 0..{n_units - 1}")
        target = torch.tensor(pick, device=device)
        u = len(pick)

        gen = torch.Generator().manual_seed(seed)
        if param == "pixel":
            z = (0.01 * torch.randn(u, c, h, w, generator=gen)).to(device).requires_grad_(True)
        else:
            z = (0.01 * torch.randn(u, c, h, w // 2 + 1, 2, generator=gen)).to(device).requires_grad_(True)
            scale = _fourier_scale(h, w, decay_power, device)

        def render() -> torch.Tensor:
            pre = z if param == "pixel" else torch.fft.irfft2(torch.view_as_complex(z) * scale, s=(h, w), norm="ortho")
            return lo + (hi - lo) * torch.sigmoid(pre)  # (U, C, H, W)

        def score(img: torch.Tensor, net: nn.Module = fast) -> torch.Tensor:
            return _objective(forward_until(net, name, img), target, name)

        with torch.no_grad():
            # Reported objectives come from the caller's model itself, not the folded copy.
            start = score(render(), model).cpu()
        shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=gen).tolist()
        optimizer = torch.optim.Adam([z], lr=lr)
        redirect_steps = int(round(redirect_fraction * steps))
        history = torch.empty(steps)
        for step in tqdm(range(steps), desc=f"act-max {name}", disable=not progress, leave=False):
            if step == redirect_steps:
                for m in fast.modules():
                    if isinstance(m, _SwitchableReLU):
                        m.redirect = False
            img = render()
            dy, dx = shifts[step]
            shifted = torch.roll(img, (dy, dx), dims=(2, 3)) if (dy or dx) else img
            obj = score(shifted)
            loss = (-obj + tv_weight * _total_variation(img) + l2_weight * img.pow(2).mean((1, 2, 3))).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history[step] = obj.detach().mean().cpu()
            if not math.isfinite(float(history[step])):
                raise ReplearnError(f"act-max on {name} diverged (objective {float(history[step])}); lower lr={lr}")
        with torch.no_grad():
            final = render()
            end = score(final, model).cpu()
    finally:
        model.train(was_training)
    return ActMaxResult(final.detach().cpu(), start, end, history, pick, name)
