"""Same-shape arithmetic probe: a model's own Linear/Conv2d layers, forward and backward, and nothing else.

The probe runs each weight layer of the model on random inputs of exactly the shapes the layer
sees in training (batch size, channels, map size, memory format), with input and weight gradients,
but without activations, normalization, the loss, the optimizer or the data pipeline. Its rate
(GFLOP/s, counted by torch's FlopCounterMode) is what this machine's kernels reach on this model's
arithmetic; an epoch's rate divided by it is the share of the epoch that is that arithmetic.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def layer_input_shapes(model: nn.Module, batch_size: int) -> list[tuple[nn.Module, torch.Size]]:
    """(layer, input shape) of every Linear and Conv2d in forward order, for one batch."""
    seen: list[tuple[nn.Module, torch.Size]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0].shape)))
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(batch_size, *model.input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def layer_probe(model: nn.Module, batch_size: int, repeats: int = 7, steps: int = 5,
                memory_format: torch.memory_format = torch.contiguous_format) -> dict:
    """Median GFLOP/s of the model's weight layers alone, forward + backward at ``batch_size``."""
    layers = layer_input_shapes(model, batch_size)
    inputs, grads = [], []
    for i, (layer, shape) in enumerate(layers):
        x = torch.randn(shape)
        if x.dim() == 4:
            x = x.contiguous(memory_format=memory_format)
        inputs.append(x.requires_grad_(i > 0))  # the first layer's input is data: no input gradient
        with torch.no_grad():
            grads.append(torch.randn_like(layer(x)))

    def one_pass() -> None:
        for layer, x, g in zip((m for m, _ in layers), inputs, grads):
            layer(x).backward(g)

    with FlopCounterMode(display=False) as counter:
        one_pass()
    flops = counter.get_total_flops()
    for _ in range(2):  # warm-up: allocations and oneDNN primitive caches
        one_pass()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            one_pass()
        rates.append(flops * steps / (time.perf_counter() - start) / 1e9)
    model.zero_grad(set_to_none=True)
    return {"gflops": statistics.median(rates), "mflop_per_sample": flops / batch_size / 1e6}
