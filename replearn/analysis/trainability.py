"""Trainability diagnostics: per-layer gradient norms and dead ReLU units."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from replearn.errors import ReplearnError


def layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The main weight of each hidden block (its Linear/Conv) and of the head, keyed by layer name."""
    out = {}
    for name in model.layer_names():
        module = model.get_submodule(name)
        # Blocks hold one matrix/kernel (linear or conv); norm scales are 1-D and skipped.
        weights = [p for p in module.parameters() if p.dim() >= 2]
        if len(weights) != 1:
            raise ReplearnError(f"layer {name} has {len(weights)} weight matrices; expected exactly one")
        out[name] = weights[0]
    return out


def gradient_norms(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
    loss_fn: Callable = F.cross_entropy,
) -> dict[str, dict[str, float]]:
    """L2 norm of each layer's weight gradient of the mean loss over ``images`` (processed in batches).

    Runs in train mode (batch statistics, as in a training step) on a copy of
    the model, so running norm statistics of ``model`` stay untouched. Returns
    {layer: {"grad_norm": ||g||, "relative": ||g|| / ||w||}}; call it right
    after ``build_model`` for the value at initialization.
    """
    if len(images) == 0 or len(images) != len(labels):
        raise ReplearnError(f"gradient_norms needs matching non-empty images/labels, got {len(images)} and {len(labels)}")
    work = copy.deepcopy(model).train()
    work.zero_grad(set_to_none=True)
    device = next(work.parameters()).device
    n = len(images)
    for start in range(0, n, batch_size):
        x = images[start:start + batch_size].to(device)
        x = normalize(x) if normalize is not None else x.float()
        y = labels[start:start + batch_size].to(device)
        # Weight by batch share so the result is the gradient of the mean loss.
        loss = loss_fn(work(x), y) * (len(y) / n)
        loss.backward()
    out = {}
    for name, w in layer_weights(work).items():
        g = float(w.grad.norm()) if w.grad is not None else 0.0
        wn = float(w.detach().norm())
        out[name] = {"grad_norm": g, "relative": g / wn if wn > 0 else float("nan")}
    return out


def dead_unit_fraction(acts: torch.Tensor) -> float:
    """Fraction of units that are never positive over the whole dataset.

    ``acts``: (N, D) per-unit features, or (N, C, H, W) maps. For maps a unit
    is a channel, dead only if it is never positive at any position of any
    image. Channel-mean-pooled ReLU outputs give the same answer as the maps
    (a mean of non-negative values is 0 only when all are 0), so pooled
    features from the recording pass suffice. Only meaningful for ReLU
    outputs (GELU/tanh units are never exactly dead).
    """
    if acts.dim() not in (2, 4) or acts.shape[0] == 0:
        raise ReplearnError(f"dead_unit_fraction needs (N, D) or (N, C, H, W) activations, got shape {tuple(acts.shape)}")
    per_unit = acts.transpose(0, 1).flatten(1).amax(1)  # (D,) or (C,): max over images (and positions)
    return float((per_unit <= 0).double().mean())
