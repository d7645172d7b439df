"""Activation maximization for 1-channel 28x28 models: gradient ascent on the input, all units at once.

Each requested unit owns one image of the batch (batch index = unit). The
objective of unit ``u`` is the spatial mean of channel ``u`` for conv maps
(every position counts, so the image is not tied to the map's centre), the
activation of unit ``u`` for vector layers, and logit ``u`` for ``head``.
Images live in the model's normalized input space and are kept inside the
range of valid pixels by a sigmoid: ``image = lo + (hi - lo) * sigmoid(z)``.
With a data prior (:mod:`replearn.actmax.priors`) ``z`` is a whitened PCA code of the
training images, the objective may add ``prior_weight * log p(z)``, and every
step sees the image randomly shifted, rotated and scaled.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from replearn.actmax.priors import DATA_PRIORS, DataPrior, random_transform
from replearn.errors import ReplearnError
from replearn.progress import progress as progress_bar
from replearn.recording.hooks import forward_until, model_device, resolve_layers

PARAMS = ("pixel", "fourier", "pca", "gaussian", "gmm")


@dataclass
class ActMaxResult:
    """``images`` (U, 1, H, W) normalized inputs; objectives (U,) before/after; mean objective per step."""

    images: torch.Tensor
    objective_start: torch.Tensor
    objective_end: torch.Tensor
    objective_history: torch.Tensor
    units: list[int] = field(default_factory=list)
    layer: str = ""
    # With a ladder of prior weights: the weight chosen for each unit (U,).
    prior_weights: torch.Tensor | None = None


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
    tv_weight: float | None = None,
    l2_weight: float | None = None,
    redirect_fraction: float = 0.5,
    param: str = "pixel",
    decay_power: float = 1.0,
    progress: bool = True,
    device: torch.device | str | None = None,
    mean: float = 0.1307,
    std: float = 0.3081,
    value_range: tuple[float, float] | None = None,
    prior: DataPrior | None = None,
    prior_weight: float | Sequence[float] = 1.0,
    transforms: bool | None = None,
    objective_floor: torch.Tensor | None = None,
    cap_margin: float | None = 0.1,
) -> ActMaxResult:
    """Optimize one input per unit of ``layer`` to maximize it; returns a CPU :class:`ActMaxResult`.

    Loss per image: ``-objective + tv_weight * TV + l2_weight * mean(x^2)`` (defaults 0.05 and 0.001
    for pixel/Fourier, 0 with a data prior). ``param`` in pca/gaussian/gmm needs ``prior`` (a
    :class:`~replearn.actmax.priors.DataPrior` of the model's dataset): the image is rendered from a whitened
    code, the loss adds ``-prior_weight * log p(code) / dims`` for gaussian/gmm, and ``transforms``
    (default on with a data prior) shifts, rotates and scales the image at random each step.
    A sequence of ``prior_weight`` values optimizes every unit once per weight (in one batch) and keeps,
    per unit, the image with the largest weight whose final objective reaches ``objective_floor`` (U,)
    (e.g. the unit's top-1 dataset activation): the most data-like image that still drives the unit that
    far; without a floor, or when no weight reaches it, the smallest weight's image is kept. With a floor
    and a density, the objective is divided by ``|floor|`` (so one ladder suits logits and small channels)
    and counts only up to ``floor + cap_margin * |floor|`` (None: no cap), so past it the prior alone
    shapes the image. Each step rolls the batch by a seeded random shift of up to ``jitter`` pixels
    (default: 1 for conv nets, 0 for MLPs, which are not shift-invariant).
    ``param="fourier"`` learns rfft2 coefficients scaled by 1/frequency^``decay_power``
    (decorrelated, smoother images). During the first ``redirect_fraction`` of the steps, the target
    layer's ReLUs pass gradients that would switch them on, so units that start dead still move.
    ``value_range`` defaults to pixels 0..255 normalized by ``mean``/``std``. Same seed and threads -> bitwise same result on CPU.
    Gradients flow through an eval-mode copy with BatchNorm folded in; the model itself is only
    switched to eval (and back) for the reported objectives. It must live on ``device``.
    """
    (name,) = resolve_layers(model, [layer])
    if param not in PARAMS:
        raise ReplearnError(f"param={param!r} is invalid; use one of {', '.join(PARAMS)}")
    data_prior = param in DATA_PRIORS
    if data_prior and prior is None:
        raise ReplearnError(f"param={param} needs a fitted prior: pass prior=replearn.actmax.priors.load_prior(splits)")
    if data_prior and tuple(prior.image_shape) != tuple(getattr(model, "input_shape", (1, 28, 28))):
        raise ReplearnError(f"the act-max prior was fitted on {prior.dataset} images of shape {tuple(prior.image_shape)} "
                            f"but the model takes {tuple(getattr(model, 'input_shape', (1, 28, 28)))}; fit one on this data")
    tv_weight = (0.0 if data_prior else 0.05) if tv_weight is None else tv_weight
    l2_weight = (0.0 if data_prior else 0.001) if l2_weight is None else l2_weight
    transforms = data_prior if transforms is None else transforms
    if jitter is None:
        # Rolling an image is a natural nuisance only for convolutions; an MLP sees a different
        # input at every shift and its units barely rise (measured), so MLPs get no jitter. One
        # pixel is already 1/28 of an MNIST digit: 2 px kept 40% of random-CNN channels from rising.
        jitter = 1 if any(isinstance(m, nn.Conv2d) for m in model.modules()) and not transforms else 0
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
        weights = sorted(float(v) for v in (prior_weight if isinstance(prior_weight, Sequence) else [prior_weight]))
        if not weights or min(weights) < 0:
            raise ReplearnError(f"prior_weight={prior_weight} is invalid; use a number >= 0 or a list of them")
        if param not in ("gaussian", "gmm"):
            weights = weights[:1]  # without a density the weight changes nothing: one run per unit
        n_w = len(weights)
        if objective_floor is not None and len(objective_floor) != len(pick):
            raise ReplearnError(f"objective_floor has {len(objective_floor)} values for {len(pick)} units; pass one per unit")
        # Row r of the batch is unit r // n_w optimized with weight weights[r % n_w].
        target = torch.tensor(pick, device=device).repeat_interleave(n_w)
        row_weight = torch.tensor(weights, device=device).repeat(len(pick))
        cap, obj_scale = None, 1.0
        if objective_floor is not None and param in ("gaussian", "gmm"):
            floor = objective_floor.to(device).float().repeat_interleave(n_w)
            # The objective counts in units of the floor, so one weight ladder fits a logit of 30 and a
            # channel of 0.5 alike.
            obj_scale = floor.abs().clamp(min=1e-2)
            cap = floor + cap_margin * floor.abs() if cap_margin is not None else None
        u = len(target)

        gen = torch.Generator().manual_seed(seed)
        if param == "pixel":
            z = (0.01 * torch.randn(u, c, h, w, generator=gen)).to(device).requires_grad_(True)
        elif param == "fourier":
            z = (0.01 * torch.randn(u, c, h, w // 2 + 1, 2, generator=gen)).to(device).requires_grad_(True)
            scale = _fourier_scale(h, w, decay_power, device)
        else:
            z = (0.01 * torch.randn(u, prior.dims, generator=gen)).to(device).requires_grad_(True)

        def render01() -> torch.Tensor:
            """The current images as pixels in [0, 1], (U, C, H, W)."""
            if data_prior:
                return prior.render(z)
            pre = z if param == "pixel" else torch.fft.irfft2(torch.view_as_complex(z) * scale, s=(h, w), norm="ortho")
            return torch.sigmoid(pre)

        def render() -> torch.Tensor:
            return lo + (hi - lo) * render01()  # (U, C, H, W)

        def score(img: torch.Tensor, net: nn.Module = fast) -> torch.Tensor:
            return _objective(forward_until(net, name, img), target, name)

        with torch.no_grad():
            # Reported objectives come from the caller's model itself, not the folded copy.
            start = score(render(), model).cpu()
        # A tensor (16 bytes a step), read one step at a time: a list of Python ints took ~150 bytes a step.
        shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=gen)
        optimizer = torch.optim.Adam([z], lr=lr)
        redirect_steps = int(round(redirect_fraction * steps))
        history = torch.empty(steps)
        for step in progress_bar(range(steps), desc=f"act-max {name}", enabled=progress, leave=False):
            if step == redirect_steps:
                for m in fast.modules():
                    if isinstance(m, _SwitchableReLU):
                        m.redirect = False
            img01 = render01()
            img = lo + (hi - lo) * img01
            if transforms:
                # Transformed in pixel space, so the border it pulls in is black background, as in the data.
                seen = lo + (hi - lo) * random_transform(img01, gen)
            else:
                dy, dx = shifts[step].tolist()
                seen = torch.roll(img, (dy, dx), dims=(2, 3)) if (dy or dx) else img
            obj = score(seen)
            # Above the cap the unit has what it needs, and only the prior moves the image.
            loss = (-(obj if cap is None else torch.minimum(obj, cap)) / obj_scale + tv_weight * _total_variation(img)
                    + l2_weight * img.pow(2).mean((1, 2, 3)))
            if param in ("gaussian", "gmm"):
                loss = loss - row_weight * prior.log_density(z, param) / prior.dims
            loss = loss.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history[step] = obj.detach().mean().cpu()
            if not math.isfinite(float(history[step])):
                raise ReplearnError(f"act-max on {name} diverged (objective {float(history[step])} at step {step + 1}); "
                                   f"use smaller prior_weights, another prior, or a lower lr than {lr} (maximize_activations)")
        with torch.no_grad():
            final = render()
            end = score(final, model).cpu()
    finally:
        model.train(was_training)
    chosen = None
    if n_w > 1:
        ends = end.view(len(pick), n_w)
        ok = ends >= objective_floor.cpu().float().view(-1, 1) if objective_floor is not None \
            else torch.zeros_like(ends, dtype=torch.bool)
        # Largest weight that reaches the floor; column 0 (smallest weight) when none does.
        col = torch.where(ok.any(1), (ok * torch.arange(1, n_w + 1)).argmax(1), torch.zeros(len(pick), dtype=torch.long))
        rows = torch.arange(len(pick)) * n_w + col
        final, start, end = final.detach().cpu()[rows], start[rows], end[rows]
        chosen = torch.tensor(weights)[col]
    return ActMaxResult(final.detach().cpu(), start, end, history, pick, name, chosen)
