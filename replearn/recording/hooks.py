"""Record what named layers output: a hook context manager and a batched dataset pass.

Layer names are ``named_modules()`` paths (``"blocks.0"``, ``"head"``); the
same strings work with torchvision's ``create_feature_extractor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from replearn.errors import ReplearnError
from replearn.progress import progress as progress_bar

POOLS = ("none", "mean", "max")


def default_layers(model: nn.Module) -> list[str]:
    """``model.layer_names()`` when the model has it, else every leaf module in ``named_modules`` order."""
    if hasattr(model, "layer_names"):
        return list(model.layer_names())
    return [name for name, mod in model.named_modules() if name and not any(True for _ in mod.children())]


def resolve_layers(model: nn.Module, layers: str | Sequence[str] = "all") -> list[str]:
    """Validate ``layers`` ("all", one name or a list of names) against the model's module paths."""
    if isinstance(layers, str):
        layers = default_layers(model) if layers == "all" else [layers]
    names = list(layers)
    if not names:
        raise ReplearnError("no layers requested; pass layers='all' or a list such as ['blocks.0', 'head']")
    modules = dict(model.named_modules())
    for name in names:
        if not isinstance(name, str) or not name or name not in modules:
            raise ReplearnError(f"unknown layer {name!r}; valid layers: {', '.join(default_layers(model))}")
    return names


def _detach(out, to_cpu: bool):
    if isinstance(out, torch.Tensor):
        out = out.detach()
        return out.cpu() if to_cpu else out
    if isinstance(out, (tuple, list)):
        return type(out)(_detach(o, to_cpu) for o in out)
    return out


@contextmanager
def record_activations(
    model: nn.Module, layers: str | Sequence[str] = "all", to_cpu: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict ``{layer: output}`` refreshed by every forward pass run inside the block.

    Outputs are detached (and moved to CPU with ``to_cpu``); the dict holds the
    last forward's outputs, keyed in the order of the requested ``layers``.
    Hooks are removed on exit, also when the block raises.
    """
    names = resolve_layers(model, layers)
    modules = dict(model.named_modules())
    acts: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            fresh = name not in acts
            acts[name] = _detach(output, to_cpu)
            if fresh:
                # Layers may fire out of the requested order; re-key once so iteration follows the request.
                ordered = {n: acts[n] for n in names if n in acts}
                acts.clear()
                acts.update(ordered)

        return hook

    handles = []
    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield acts
    finally:
        for handle in handles:
            handle.remove()


class _StopForward(Exception):
    """Raised by a hook once the target layer has run, to skip the rest of the network."""


def forward_until(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """Output of ``layer`` for input ``x``, without computing the layers after it.

    Keeps the autograd graph (used for gradient ascent); wrap in no_grad/inference_mode otherwise.
    """
    (name,) = resolve_layers(model, [layer])
    module = dict(model.named_modules())[name]
    box: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        box.append(output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not box:
        raise ReplearnError(f"layer {name!r} did not run in the forward pass; pick one of {', '.join(default_layers(model))}")
    return box[0]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for parameter-free models)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def prepare_batch(batch: torch.Tensor, normalize: Callable | None, device: torch.device) -> torch.Tensor:
    """Move a batch to ``device`` and make it float (``normalize`` maps uint8 pixels to model inputs)."""
    batch = batch.to(device, non_blocking=True)
    if normalize is not None:
        return normalize(batch)
    return batch.float() if not batch.is_floating_point() else batch


def _pool(out: torch.Tensor, pool: str) -> torch.Tensor:
    if out.dim() != 4 or pool == "none":
        return out
    return out.mean((2, 3)) if pool == "mean" else out.amax((2, 3))  # (B, C)


def check_images(images: torch.Tensor, what: str = "images") -> None:
    """Raise a one-line ReplearnError unless ``images`` is a non-empty (N, C, H, W) tensor."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ReplearnError(f"{what} must be a non-empty (N, C, H, W) tensor, got {shape}; "
                            "add the channel axis with unsqueeze(1)")


def capture_activations(
    model: nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str] = "all",
    batch_size: int = 1000,
    pool: str = "none",
    device: torch.device | str | None = None,
    normalize: Callable | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``images`` (N, C, H, W) through ``model`` in batches and return ``{layer: CPU tensor (N, ...)}``.

    ``normalize`` is applied per batch (uint8 without it are just cast to float).
    ``pool`` mean|max reduces conv maps (N, C, H, W) to (N, C) per batch, which
    bounds memory. The model runs in eval mode and gets its mode back after.
    """
    if pool not in POOLS:
        raise ReplearnError(f"pool={pool!r} is invalid; use one of {', '.join(POOLS)}")
    if batch_size < 1:
        raise ReplearnError(f"batch_size={batch_size} is invalid; use a positive number")
    check_images(images)
    names = resolve_layers(model, layers)
    device = torch.device(device) if device is not None else model_device(model)
    n = images.shape[0]
    out: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        with record_activations(model, names) as acts:
            for start in progress_bar(range(0, n, batch_size), desc="capture", enabled=progress, leave=False):
                stop = min(start + batch_size, n)
                with torch.inference_mode():
                    model(prepare_batch(images[start:stop], normalize, device))
                    missing = [name for name in names if name not in acts]
                    if missing:
                        raise ReplearnError(f"layers {missing} did not run in the forward pass; "
                                            f"pick from {', '.join(default_layers(model))}")
                    pooled = {name: _pool(acts[name], pool) for name in names}
                if not out:
                    # Allocated outside inference mode so callers may edit the results in place.
                    out = {name: torch.empty((n, *t.shape[1:]), dtype=t.dtype) for name, t in pooled.items()}
                for name, t in pooled.items():
                    out[name][start:stop].copy_(t)
    finally:
        model.train(was_training)
    return out
