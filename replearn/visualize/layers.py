"""One layer's part of the run page: its units, its figures (weights, activity, top-k, act-max) and their captions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from replearn.actmax.choice import PriorChoice
from replearn.errors import ReplearnError
from replearn.recording.topk import TopK, top_k_for_layers
from replearn.visualize.actmax_section import actmax_caption
from replearn.visualize.page import PageFigure, PageSection
from replearn.visualize.reuse import layer_actmax
from replearn.visualize.unit_choice import (
    activation_caption,
    context_examples,
    failed_note,
    most_responsive,
    summary_row,
)
from replearn.viz import (
    first_layer_weights,
    plot_activation_heatmap,
    plot_actmax,
    plot_feature_maps_batch,
    plot_first_layer,
    plot_top_k,
)
from replearn.viz.grid import DPI
from replearn.viz.summary import SummaryRow


def select_layers(model: torch.nn.Module, layers: str | Sequence[str]) -> list[str]:
    """``all`` -> every hidden block and the head; a list is checked against the model's names."""
    valid = model.layer_names()
    if isinstance(layers, str):
        if layers != "all":
            layers = [layers]
        else:
            return valid
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise ReplearnError(f"layers={list(layers)} has unknown {', '.join(unknown)}: choose from all, {', '.join(valid)}")
    return [name for name in valid if name in layers]  # forward order


def pick_inputs(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` test indices, seeded, cycling through the classes so the inputs differ in class."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    chosen: list[int] = []
    classes = labels[order].unique().tolist()
    for i in range(min(count, len(labels))):
        wanted = classes[i % len(classes)]
        for idx in order.tolist():
            if int(labels[idx]) == wanted and idx not in chosen:
                chosen.append(idx)
                break
    return torch.tensor(chosen, dtype=torch.long)


def save_figure(fig: Figure, path: Path) -> Path:
    """``fig`` as a PNG at the page's resolution; returns ``path``."""
    fig.savefig(path, dpi=DPI)
    return path


def _file(layer: str, kind: str) -> str:
    return f"{layer.replace('.', '-')}_{kind}.png"


@dataclass
class PageInputs:
    """What every layer's figures share: the model, the test split and what was chosen once for the page."""

    model: torch.nn.Module
    splits: Any  # uint8 test_x (N, 1, H, W), test_y, classes, normalize, mean, std
    opts: Any  # the visualize config (VisualizeConfig or DictConfig)
    device: torch.device
    out: Path
    classes: list[str]
    inputs_idx: torch.Tensor  # test indices of the feature-map and activation figures
    captions: list[str]  # one per input: "test #i (class)"
    feats: dict[str, torch.Tensor]  # each layer's activations on those inputs
    prior: PriorChoice
    dissected: dict  # {layer: LayerDissection} when the page dissects, else empty
    top: dict[str, TopK] = field(default_factory=dict)  # each shown layer's top-k test images, filled in one pass


@dataclass
class LayerPage:
    """A layer's section of the page, its row of the opening figure and its act-max record (for actmax.json)."""

    section: PageSection
    summary: SummaryRow
    actmax_record: dict


@dataclass
class _Units:
    """The units a layer's grids show, their top-k test images, and how the page words them."""

    units: list[int]
    top: TopK
    kind: str  # channel, unit or class logit
    names: list[str] | None  # class names for the head
    dead: torch.Tensor | None  # (U,) hidden units that never fire on the test images
    heading: str
    intro: str


def _choose_units(page: PageInputs, layer: str, act: torch.Tensor) -> _Units:
    images, opts = page.splits.test_x.cpu(), page.opts
    hidden = page.model.hidden_layers()
    n_units = act.shape[1]
    is_head = layer == "head"
    kind = "channel" if act.dim() == 4 else ("class logit" if is_head else "unit")
    k = min(opts.k, len(images))
    if not page.top:  # one forward pass over the test split for every layer, not one per layer
        page.top.update(top_k_for_layers(page.model, list(page.feats), images, k=k, normalize=page.splits.normalize))
    if is_head:
        units = list(range(n_units))
        top = page.top[layer]
        heading, shown = "head (class logits)", f"grids show all {n_units} class logits"
    else:
        # Units by index are mostly silent in late layers: rank by response on the whole test split.
        units, top = most_responsive(page.top[layer], opts.units)
        heading = f"{layer} (hidden layer {hidden.index(layer) + 1} of {len(hidden)})"
        shown = (f"grids show the {len(units)} most responsive {kind}s (highest mean of their top-{k} "
                 f"activations on the {len(images)} test images), strongest first: {', '.join(map(str, units))}")
    names = [page.classes[u] if u < len(page.classes) else str(u) for u in units] if is_head else None
    # A hidden unit whose largest test activation is <= 0 never fires: its "top" images are arbitrary ties.
    dead = None if is_head else (top.values[:, 0] <= 0)
    n_dead = 0 if dead is None else int(dead.sum())
    dead_note = f"; {n_dead} of them never fire on the test images (marked dead)" if n_dead else ""
    return _Units(units, top, kind, names, dead, heading, f"{n_units} {kind}s; {shown}{dead_note}.")


def _add(page: PageInputs, section: PageSection, name: str, fig: Figure, caption: str) -> None:
    section.figures.append(PageFigure(save_figure(fig, page.out / name), caption))


def _weights_and_activity(page: PageInputs, section: PageSection, layer: str, act: torch.Tensor, chosen: _Units) -> None:
    """The first layer's weight images, then the layer's feature maps (conv) or activation heatmap."""
    model, units, kind = page.model, chosen.units, chosen.kind
    images = page.splits.test_x.cpu()
    if layer == model.hidden_layers()[0]:
        what = "filters" if hasattr(model.blocks[0], "conv") else "units"
        _add(page, section, "first_layer_weights.png", plot_first_layer(first_layer_weights(model), units=units),
             f"First-layer {what} as images of their input weights (red positive, blue negative, one scale "
             "centred at 0): the pixel pattern each one adds up.")
    n_inputs = len(page.inputs_idx)
    if act.dim() == 4:
        _add(page, section, _file(layer, "feature_maps"),
             plot_feature_maps_batch(act, images[page.inputs_idx], channels=units, captions=page.captions,
                                     title=f"{layer} feature maps"),
             f"Feature maps: the {len(units)} most responsive channels of {layer} for {n_inputs} test inputs "
             "(one shared colour scale), so you can see where in the image each channel fires.")
    else:
        _add(page, section, _file(layer, "activations"),
             plot_activation_heatmap(act[:, units], row_labels=page.captions,
                                     unit_labels=chosen.names if layer == "head" else [str(u) for u in units],
                                     title=f"{layer} activations ({len(units)} of {act.shape[1]} {kind}s)"),
             activation_caption(act, units, layer, kind, n_inputs))


def _top_k(page: PageInputs, section: PageSection, layer: str, chosen: _Units) -> torch.Tensor:
    """The top-k figure; returns its examples (U, k, 1, h, w): conv windows around each maximum, else whole images."""
    images, top = page.splits.test_x.cpu(), chosen.top
    if top.positions is not None:
        examples, crop_note = context_examples(images, top, page.model, layer)
    else:
        examples = images[top.indices]  # (U, k, 1, 28, 28)
        crop_note = "whole images"
    k = top.indices.shape[1]
    dead_tail = ("; an empty block marked dead: the unit is never above 0 on any test image."
                 if chosen.dead is not None and int(chosen.dead.sum()) else ".")
    _add(page, section, _file(layer, "topk"),
         plot_top_k(examples.float(), units=chosen.units, values=top.values, unit_names=chosen.names, dead=chosen.dead,
                    title=f"{layer}: top-{k} test images per {chosen.kind}"),
         f"The {k} test images that most activate each {chosen.kind} ({crop_note}); label: index and largest activation"
         + dead_tail)
    return examples


def layer_page(page: PageInputs, layer: str) -> LayerPage:
    """Every figure of ``layer``, in page order: weights (first layer), activity, top-k, act-max."""
    act = page.feats[layer].cpu()  # (N, U) or (N, C, H, W)
    chosen = _choose_units(page, layer, act)
    section = PageSection(chosen.heading, chosen.intro)
    _weights_and_activity(page, section, layer, act, chosen)
    examples = _top_k(page, section, layer, chosen)
    opts, prior = page.opts, page.prior
    result, record = layer_actmax(prior, page.model, layer, chosen.units, page.splits, opts, page.device)
    _add(page, section, _file(layer, "actmax"),
         plot_actmax(result.images.cpu(), units=chosen.units, unit_names=chosen.names, objective=result.objective_end,
                     title=f"{layer}: activation maximization ({prior.name} prior)"),
         actmax_caption(prior, record, chosen.kind, opts.steps, opts.seed) + failed_note(result.objective_end))
    concepts = page.dissected[layer].unit_labels() if layer in page.dissected else None
    row = summary_row(layer, chosen.units, chosen.names, chosen.top, examples, result.images.cpu(),
                      result.objective_end, chosen.dead, chosen.kind, concepts)
    return LayerPage(section, row, record)
