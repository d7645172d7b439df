"""Spatial maps of units, one (B, U, h, w) chunk at a time, for network dissection.

Three kinds of layer:

- ``activation``: a conv unit's own feature map (native resolution, e.g. 14x14,
  7x7 or 4x4) with its geometry (where each cell's receptive field is centred,
  :mod:`replearn.dissection.registration`); the dissection upsamples it on that grid.
- ``grad_x_input``: for hidden units without a spatial map (MLP units)
  a spatial *proxy*: the unit's input gradient times the image's ink,
  ``d unit / d x[p] * (x[p] - x_black[p])``, where ``x_black`` is an all-black
  image. It is the first-order share of pixel ``p`` in the unit's response
  (exact for a bias-free ReLU network inside its linear region); it is zero
  wherever the image has no ink. It shows *which ink drives the unit in this
  image*, not where the unit "is" - an MLP unit sees the whole image from its
  first layer and has no location of its own.
- ``class``: the logits (``head``). Logit c is trained to be class c, so it is
  labelled with class c's level-3 concept by construction, not dissected.

Gradient maps of MLP blocks are computed forward-mode, block after block
(one Jacobian-vector product per ink pixel), so a whole stack costs one pass
linear in depth; other vector layers use one backward pass per unit.

A map source is anything with ``.methods`` ({layer: kind}), ``.geometry`` ({layer:
Geometry} for map layers), ``.scores`` ({layer: (N, U)} for class layers), ``.images``,
``.count(layer)`` and ``.chunks(limit, pixels_kept)``: :class:`MapSource` records a model,
:class:`PlantedSource` serves maps made by hand (controls, tests).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import jvp, vmap

from replearn.dissection.ink_maps import InkMaps
from replearn.dissection.registration import Geometry, layer_geometry
from replearn.errors import ReplearnError
from replearn.models import MLPBlock
from replearn.recording.hooks import capture_activations, forward_until, model_device

METHODS = ("auto", "activation", "grad_x_input")
HEAD = "head"  # the logits layer of every replearn model


def layer_method(model: nn.Module, layer: str, method: str = "auto") -> str:
    """The kind used for ``layer``: ``class`` for the logits, else its activation map if it has one, else the
    gradient x input proxy."""
    if method not in METHODS:
        raise ReplearnError(f"dissection map method {method!r} is invalid; use one of {', '.join(METHODS)}")
    if layer == HEAD and hasattr(model, "layer_names"):
        return "class"
    spatial = _has_spatial_map(model, layer)
    if method == "activation" and not spatial:
        raise ReplearnError(f"layer {layer!r} has no spatial map (its output is a vector); "
                            "dissect it with method=grad_x_input (or auto)")
    if method == "auto":
        return "activation" if spatial else "grad_x_input"
    return method


def _has_spatial_map(model: nn.Module, layer: str) -> bool:
    c, h, w = getattr(model, "input_shape", (1, 28, 28))
    probe = torch.zeros(1, c, h, w, device=model_device(model))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = forward_until(model, layer, probe)
    finally:
        model.train(was_training)
    return out.dim() == 4


def _is_mlp_stack(model: nn.Module) -> bool:
    """True when every block maps vectors to vectors (then the forward-mode chain applies)."""
    return hasattr(model, "blocks") and not any(isinstance(m, nn.Conv2d) for m in model.modules())


def _ink(images: torch.Tensor, std: float, pixels_kept: torch.Tensor | None = None
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ink of each image's ink pixels, ink first: (values (B, Q), pixel index (B, Q), valid (B, Q)).

    Ink is measured in model-input units, x - x_black = pixel / 255 / std; Q is the chunk's
    largest ink count (shorter images are padded with invalid, zero entries).
    """
    pixels = images.flatten(1).float()
    if images.is_floating_point() and pixels.max() <= 1.0 + 1e-6:
        pixels = pixels * 255.0  # float images in [0, 1]
    ink = pixels / 255.0 / std  # (B, P)
    if pixels_kept is not None:  # maps wanted at these pixels only: the others need no tangent
        ink = ink * pixels_kept.flatten().to(ink.dtype)
    has = ink > 0
    q = max(int(has.sum(1).max()), 1)
    order = torch.argsort(has.to(torch.int8), dim=1, descending=True, stable=True)[:, :q]  # (B, Q)
    valid = has.gather(1, order)
    return ink.gather(1, order) * valid, order, valid


def _first_block_tangents(block: nn.Module, x: torch.Tensor, ink: torch.Tensor, order: torch.Tensor):
    """(output, tangents (Q, B, D)) of an MLP block's first Linear for the ink directions, by gathering
    weight columns: W (ink_p e_p) = ink_p W[:, p], no (Q, B, P) tangent tensor needed."""
    weight = block.linear.weight  # (D, P)
    pre = block.linear(x)  # (B, D)
    t_pre = weight.T[order.T] * ink.T.unsqueeze(2)  # (Q, B, D)
    rest = lambda z: block.act(block.norm(z))  # noqa: E731
    t_out = vmap(lambda t: jvp(rest, (pre,), (t,))[1])(t_pre)
    return rest(pre), t_out


def _mlp_grad_maps(model: nn.Module, layers: list[str], images: torch.Tensor, normalize, std: float,
                   pixels_kept: torch.Tensor | None = None, sparse: bool = False) -> dict:
    """gradient x input maps (B, U, H, W) for MLP blocks / head, by a forward-mode chain through the stack.

    With ``pixels_kept`` (bool (H, W)) only those pixels are computed (the rest are 0): the cost is
    proportional to the ink pixels kept. ``sparse``: :class:`InkMaps` instead of dense tensors.
    """
    b = images.shape[0]
    _, h, w = model.input_shape
    x = (normalize(images) if normalize is not None else images.float()).flatten(1)  # (B, P)
    ink, order, valid = _ink(images, std, pixels_kept)
    wanted, out = set(layers), {}
    steps = [(f"blocks.{i}", blk) for i, blk in enumerate(model.blocks)] + [("head", model.head)]
    first = steps[0][1]
    if isinstance(first, MLPBlock) and not first.residual:
        h_cur, t_cur = _first_block_tangents(first, x, ink, order)
        done = [steps.pop(0)[0]]
    else:
        tangents = torch.zeros(order.shape[1], b, x.shape[1])
        tangents.scatter_(2, order.t().unsqueeze(2), ink.t().unsqueeze(2))  # (Q, B, P)
        h_cur, t_cur, done = x, tangents, []

    def maps(tangents: torch.Tensor):  # (Q, B, U) directional derivatives -> the maps, 0 off the ink
        on_ink = InkMaps((tangents.permute(1, 2, 0) * valid[:, None, :]).contiguous(), order, valid, (h, w))
        return on_ink if sparse else on_ink.dense()

    for name in done:
        if name in wanted:
            out[name] = maps(t_cur)
    for name, module in steps:
        if len(out) == len(wanted):
            break
        t_cur = vmap(lambda t, m=module, hc=h_cur: jvp(m, (hc,), (t,))[1])(t_cur)
        h_cur = module(h_cur)
        if name in wanted:
            out[name] = maps(t_cur)
    return out


def _reverse_grad_maps(model: nn.Module, layer: str, images: torch.Tensor, normalize, std: float) -> torch.Tensor:
    """gradient x input maps (B, U, H, W) by one backward pass per unit (few-unit layers such as a CNN head)."""
    x = (normalize(images) if normalize is not None else images.float()).detach().requires_grad_(True)
    ink = images.float() / (255.0 if not images.is_floating_point() else 1.0) / std  # (B, C, H, W)
    with torch.enable_grad():
        out = forward_until(model, layer, x)  # (B, U)
        maps = []
        for unit in range(out.shape[1]):
            (grad,) = torch.autograd.grad(out[:, unit].sum(), x, retain_graph=unit + 1 < out.shape[1])
            maps.append((grad * ink).sum(1))  # (B, H, W)
    return torch.stack(maps, 1)


def grad_x_input_maps(model: nn.Module, layers: list[str], images: torch.Tensor,
                      normalize: Callable | None, std: float = 1.0,
                      pixels_kept: torch.Tensor | None = None, sparse: bool = False) -> dict:
    """{layer: (B, U, H, W)} gradient x (input - black) maps of ``images`` (uint8 (B, C, H, W)) for vector layers.

    ``pixels_kept`` (bool (H, W)) lets the MLP path skip the other pixels (left 0); ``sparse``: the MLP path
    returns :class:`~replearn.dissection.ink_maps.InkMaps` (the maps on the ink pixels only).
    """
    model.eval()
    if _is_mlp_stack(model):
        with torch.no_grad(), warnings.catch_warnings():
            # torch's first forward-mode product loads its jvp decompositions through torch.jit.script, which
            # warns that torch.jit is deprecated: torch's own doing, not something a user can act on.
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            return _mlp_grad_maps(model, layers, images.cpu(), normalize, std, pixels_kept, sparse)
    return {name: _reverse_grad_maps(model, name, images, normalize, std).detach() for name in layers}


class MapSource:
    """Chunks of native-resolution unit maps for every dissected layer, in image order, with their geometry.

    Activation maps are recorded once (they are small at native resolution);
    gradient maps are recomputed per chunk (too large to keep: U x 28 x 28 per image);
    the logits (``class``) are recorded as scores (they pick a class unit's strongest images).
    """

    def __init__(self, model: nn.Module, layers: list[str], images: torch.Tensor, normalize: Callable | None,
                 std: float, method: str = "auto", grad_images: int = 1000, batch_size: int = 250):
        self.model = model.eval()
        self.methods = {name: layer_method(model, name, method) for name in layers}
        self.images, self.normalize, self.std, self.batch_size = images, normalize, std, batch_size
        act_layers = [n for n, m in self.methods.items() if m == "activation"]
        self.grad_layers = [n for n, m in self.methods.items() if m == "grad_x_input"]
        class_layers = [n for n, m in self.methods.items() if m == "class"]
        recorded = act_layers + class_layers
        acts = capture_activations(model, images, recorded, batch_size=1000, normalize=normalize) if recorded else {}
        self.scores = {name: acts.pop(name) for name in class_layers}
        self.acts = acts
        size = tuple(images.shape[-2:])
        self.geometry = {name: layer_geometry(model, name, tuple(a.shape[-2:]), size) for name, a in acts.items()}
        self.geometry.update({name: Geometry.full(size) for name in self.grad_layers})
        self.grad_images = min(grad_images, len(images))
        self.stored_grads: dict[str, torch.Tensor] = {}
        if self.grad_layers and not _is_mlp_stack(model):
            # Conv layers asked for through the proxy (method=grad_x_input): one backward per unit is the
            # cost, so the maps are computed once and kept (U x 28 x 28 floats per image), not once per pass.
            for name in self.grad_layers:
                parts = [grad_x_input_maps(model, [name], images[s:s + 100], normalize, std)[name]
                         for s in range(0, self.grad_images, 100)]
                self.stored_grads[name] = torch.cat(parts)
            self.grad_layers = []

    def count(self, layer: str) -> int:
        """Images dissected for ``layer`` (gradient layers use the first ``grad_images``)."""
        return self.grad_images if self.methods[layer] == "grad_x_input" else len(self.images)

    def chunks(self, limit: int | None = None, pixels_kept: torch.Tensor | None = None
               ) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """(start, stop, {layer: (B, U, h, w) maps}) over the first ``limit`` images (all by default); computed
        gradient maps come as :class:`~replearn.dissection.ink_maps.InkMaps`.

        Activation layers come in ``batch_size`` chunks, computed gradient layers in chunks of 100
        (their maps are U x H x W per image); a gradient layer is absent past its ``grad_images``.
        ``pixels_kept`` (bool (H, W)): computed gradient maps are only needed at those pixels.
        """
        n = len(self.images) if limit is None else min(limit, len(self.images))
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            g_stop = min(stop, self.grad_images)
            for g_start in range(start, g_stop, 100) if self.grad_layers else ():
                g_end = min(g_start + 100, g_stop)
                yield g_start, g_end, grad_x_input_maps(self.model, self.grad_layers, self.images[g_start:g_end],
                                                        self.normalize, self.std, pixels_kept, sparse=True)
            stored = {name: acts[start:stop] for name, acts in self.acts.items()}
            stored.update({name: g[start:min(stop, len(g))] for name, g in self.stored_grads.items() if start < len(g)})
            if stored:
                yield start, stop, stored


class PlantedSource:
    """Unit maps given by hand, ``{layer: (N, U, h, w)}``, dissected like a model's (controls, tests).

    ``geometry``: {layer: Geometry}; a layer left out is full resolution if its maps are image-sized,
    else its cells tile the image evenly (:meth:`Geometry.evenly`, right for non-overlapping pooling).
    ``images`` (N, 1, H, W): the probe images (their ink makes the smeared-ink baseline); None: blank
    images of the maps' count at ``size``, so that baseline is 0.
    """

    def __init__(self, maps: dict[str, torch.Tensor], images: torch.Tensor | None = None,
                 geometry: dict[str, Geometry] | None = None, size: tuple[int, int] = (28, 28), batch_size: int = 64):
        if not maps:
            raise ReplearnError("PlantedSource got no maps; pass {layer: (N, U, h, w) tensor}")
        n = len(next(iter(maps.values())))
        if any(m.dim() != 4 or len(m) != n for m in maps.values()):
            raise ReplearnError("planted maps must all be (N, U, h, w) tensors over the same N images")
        self.images = images if images is not None else torch.zeros(n, 1, *size, dtype=torch.uint8)
        size = tuple(self.images.shape[-2:])
        self.acts, self.methods, self.scores, self.batch_size = maps, {name: "activation" for name in maps}, {}, batch_size
        geometry = dict(geometry or {})
        for name, m in maps.items():
            cells = tuple(m.shape[-2:])
            geometry.setdefault(name, Geometry.full(size) if cells == size else Geometry.evenly(cells, size))
        self.geometry = geometry

    def count(self, layer: str) -> int:
        """Every planted layer covers all its images."""
        return len(self.images)

    def chunks(self, limit: int | None = None, pixels_kept: torch.Tensor | None = None
               ) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """(start, stop, {layer: (B, U, h, w)}) over the first ``limit`` images (all by default)."""
        n = len(self.images) if limit is None else min(limit, len(self.images))
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            yield start, stop, {name: m[start:stop] for name, m in self.acts.items()}
