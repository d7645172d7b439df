"""Every figure for every layer of a trained run, plus an index.html that groups them by layer."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from replearn.conf.visualize import VisualizeConfig
from replearn.errors import ReplearnError
from replearn.visualize.page import PageFigure, PageSection, write_page
from replearn.visualize.unit_choice import (
    activation_caption,
    context_examples,
    failed_note,
    most_responsive,
    summary_row,
)
from replearn.viz import (
    embed_2d,
    first_layer_weights,
    plot_activation_heatmap,
    plot_actmax,
    plot_embeddings_by_layer,
    plot_feature_maps_batch,
    plot_first_layer,
    plot_top_k,
)
from replearn.viz.grid import DPI
from replearn.viz.summary import SummaryRow, plot_summary


def visualize_run(cfg: DictConfig, output_dir: str | os.PathLike | None = None) -> Path:
    """Load the run named by ``cfg.run`` (a folder or ``latest``) and draw everything; returns index.html.

    Figures go to ``output_dir`` if given, else ``<run dir>/viz/``.
    """
    from replearn.conf.visualize import validate_visualize
    from replearn.device import resolve_device, resolve_threads
    from replearn.runs.load import load_run, resolve_run_dir

    validate_visualize(cfg)
    device = resolve_device(cfg.device)
    threads = resolve_threads(cfg.get("threads", 0), device, key="threads")
    if device.type == "cpu":
        # Two threads on a core another process is using run many times slower than one (README, Performance).
        print(threads.describe())
    run_dir = resolve_run_dir(cfg.run, root=cfg.root)
    link = run_dir / "viz"
    if output_dir is None and link.is_symlink() and not link.resolve().is_relative_to(run_dir.resolve()):
        raise ReplearnError(f"{link} is a link to {link.resolve()}, outside the run folder; refusing to write there: "
                            "remove the link (the figures go into <run>/viz/)")
    loaded = load_run(run_dir, device=device)
    splits = loaded.splits()
    out = Path(output_dir) if output_dir is not None else run_dir / "viz"
    if output_dir is None:
        select_layers(loaded.model, cfg.layers)  # a bad option fails here, before the last page is removed
        clear_own_outputs(out)
    meta = [f"run: {run_dir}", f"model: {OmegaConf.to_yaml(loaded.cfg.model).strip().replace(chr(10), ', ')}"]
    final = run_dir / "final.json"
    if final.is_file():
        try:
            summary = json.loads(final.read_text())
            meta.append(f"status: {summary.get('status')}, test accuracy: {summary.get('test_acc')}")
        except (OSError, ValueError):
            pass  # the page is still useful without the summary line
    control = None
    if cfg.dissect:
        from replearn.analysis.run import random_init_control

        control = random_init_control(loaded.cfg.model, int(loaded.cfg.seed)).to(device)
    page = render_all(loaded.model, splits, out, cfg, device=device,
                      title=f"replearn: {run_dir.name}", meta=meta, control=control)
    print(f"wrote {page.read_text().count('<img ')} figures and {page}")
    return page


OWN_FILES = ("index.html", "actmax.json")


def clear_own_outputs(folder: Path) -> list[str]:
    """Delete what a previous visualize wrote in ``folder`` (``*.png``, index.html, actmax.json); return the names.

    Re-running with other options (fewer layers, no dissection) must not leave old figures beside the
    new page. Only plain files directly in ``folder`` go: links and sub-folders are never followed or removed.
    """
    if folder.is_symlink() or not folder.is_dir():
        return []  # a link was refused (or checked to stay in the run) by the caller; nothing of ours to clear
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and (entry.name.endswith(".png") or entry.name in OWN_FILES):
                os.unlink(entry.path)
                removed.append(entry.name)
    return sorted(removed)


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


def _file(layer: str, kind: str) -> str:
    return f"{layer.replace('.', '-')}_{kind}.png"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def render_all(
    model: torch.nn.Module,
    splits: Any,
    out_dir: str | os.PathLike,
    options: VisualizeConfig | DictConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    title: str = "replearn visualizations",
    meta: Sequence[str] = (),
    control: torch.nn.Module | None = None,
) -> Path:
    """Draw every figure for the chosen layers of ``model`` on ``splits.test_x`` and write index.html.

    ``splits`` needs uint8 ``test_x`` (N, 1, 28, 28), ``test_y`` (N,), ``classes`` and ``normalize``.
    ``options`` is the visualize config (its ``run``/``root``/``device`` are not used here);
    without Hydra, pass ``VisualizeConfig(layers=[...], units=..., ...)``. ``control`` (the run's
    random-init network) is dissected next to the model in the "What each unit detects" section.
    """
    from replearn.actmax.choice import (
        actmax_caption,
        layer_actmax,
        prepare_actmax,
        write_actmax_outputs,
    )
    from replearn.recording.hooks import capture_activations
    from replearn.recording.topk import top_k_for_layer

    opts = options if options is not None else VisualizeConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model = model.to(device).eval()
    layers = select_layers(model, opts.layers)
    images, labels = splits.test_x.cpu(), splits.test_y.cpu()
    classes = list(getattr(splits, "classes", [str(c) for c in range(int(labels.max()) + 1)]))
    if len(images) < 3:
        raise ReplearnError(f"the test split has {len(images)} images; visualizing needs at least 3")

    inputs_idx = pick_inputs(labels, opts.num_inputs, opts.seed)
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(opts.seed))
    embed_idx = perm[: min(opts.embedding_samples, len(images))].sort().values
    captions = [f"test #{int(i)} ({classes[int(labels[i])]})" for i in inputs_idx]
    feats = capture_activations(model, images[inputs_idx], layers=layers, normalize=splits.normalize, device=device)
    embed_acts = capture_activations(model, images[embed_idx], layers=layers, normalize=splits.normalize,
                                     device=device)
    embed_labels = labels[embed_idx]
    prior_choice = prepare_actmax(model, splits, opts, device)
    actmax_records: dict[str, Any] = {}

    dissection, dissected = None, {}
    if opts.dissect:
        from replearn.visualize.dissection_section import dissection_section

        # Before the layers: the opening figure labels units with what they detect.
        dissection, dissected = dissection_section(model, splits, layers, out, n_images=opts.dissect_images,
                                                   control=control.to(device) if control is not None else None,
                                                   progress=opts.progress)
    sections: list[PageSection] = []
    summary: list[SummaryRow] = []
    overview: dict[str, Any] = {"input (pixels)": embed_2d(images[embed_idx].float(), opts.embedding, opts.seed)}
    hidden = model.hidden_layers()
    what = "filters" if hasattr(model.blocks[0], "conv") else "units"
    for layer in tqdm(layers, desc="layers", disable=not opts.progress):
        act = feats[layer].cpu()  # (N, U) or (N, C, H, W)
        n_units = act.shape[1]
        is_head = layer == "head"
        is_conv = act.dim() == 4
        kind = "channel" if is_conv else ("class logit" if is_head else "unit")
        k = min(opts.k, len(images))
        if is_head:
            units = list(range(n_units))
            top = top_k_for_layer(model, layer, images, k=k, normalize=splits.normalize, units=units)
            heading, shown = "head (class logits)", f"grids show all {n_units} class logits"
        else:
            # Units by index are mostly silent in late layers: rank by response on the whole test split.
            every = top_k_for_layer(model, layer, images, k=k, normalize=splits.normalize)
            units, top = most_responsive(every, opts.units)
            heading = f"{layer} (hidden layer {hidden.index(layer) + 1} of {len(hidden)})"
            shown = (f"grids show the {len(units)} most responsive {kind}s (highest mean of their top-{k} "
                     f"activations on the {len(images)} test images), strongest first: {', '.join(map(str, units))}")
        names = [classes[u] if u < len(classes) else str(u) for u in units] if is_head else None
        # A hidden unit whose largest test activation is <= 0 never fires: its "top" images are arbitrary ties.
        dead = None if is_head else (top.values[:, 0] <= 0)
        n_dead = 0 if dead is None else int(dead.sum())
        dead_note = f"; {n_dead} of them never fire on the test images (marked dead)" if n_dead else ""
        section = PageSection(heading, f"{n_units} {kind}s; {shown}{dead_note}.")

        def add(name: str, fig, caption: str, section: PageSection = section) -> None:
            section.figures.append(PageFigure(_save(fig, out / name), caption))


        if layer == hidden[0]:
            weights = first_layer_weights(model)
            add("first_layer_weights.png", plot_first_layer(weights, units=units),
                f"First-layer {what} as images of their input weights (red positive, blue negative, one scale "
                "centred at 0): the pixel pattern each one adds up.")
        if is_conv:
            add(_file(layer, "feature_maps"),
                plot_feature_maps_batch(act, images[inputs_idx], channels=units, captions=captions,
                                        title=f"{layer} feature maps"),
                f"Feature maps: the {len(units)} most responsive channels of {layer} for {len(inputs_idx)} test inputs "
                "(one shared colour scale), so you can see where in the image each channel fires.")
        else:
            add(_file(layer, "activations"),
                plot_activation_heatmap(act[:, units], row_labels=captions,
                                        unit_labels=names if is_head else [str(u) for u in units],
                                        title=f"{layer} activations ({len(units)} of {n_units} {kind}s)"),
                activation_caption(act, units, layer, kind, len(inputs_idx)))

        if top.positions is not None:
            examples, crop_note = context_examples(images, top, model, layer)
        else:
            examples = images[top.indices]  # (U, k, 1, 28, 28)
            crop_note = "whole images"
        add(_file(layer, "topk"),
            plot_top_k(examples.float(), units=units, values=top.values, unit_names=names, dead=dead,
                       title=f"{layer}: top-{top.indices.shape[1]} test images per {kind}"),
            f"The {top.indices.shape[1]} test images that most activate each {kind} ({crop_note}); "
            "label: index and largest activation" + ("; an empty block marked dead: the unit is never above 0 "
                                                     "on any test image." if n_dead else "."))

        result, actmax_records[layer] = layer_actmax(prior_choice, model, layer, units, splits, opts, device)
        add(_file(layer, "actmax"),
            plot_actmax(result.images.cpu(), units=units, unit_names=names, objective=result.objective_end,
                        title=f"{layer}: activation maximization ({prior_choice.name} prior)"),
            actmax_caption(prior_choice, actmax_records[layer], kind, opts.steps, opts.seed)
            + failed_note(result.objective_end))
        concepts = dissected[layer].unit_labels() if layer in dissected else None
        summary.append(summary_row(layer, units, names, top, examples, result.images.cpu(), result.objective_end,
                                   dead, kind, concepts))

        # The layer's embedding is drawn once, as its panel of the overview (a per-layer copy repeated it).
        overview[layer] = embed_2d(embed_acts[layer], opts.embedding, opts.seed)
        sections.append(section)

    overview_fig = plot_embeddings_by_layer(overview, embed_labels, classes=classes,
                                            title=f"{opts.embedding.upper()} of test representations, layer by layer")
    sections.insert(0, PageSection("Overview", "Class structure from the pixels to the logits.", [
        PageFigure(_save(overview_fig, out / "embedding_overview.png"),
                   f"{opts.embedding.upper()} of the same {len(embed_idx)} test images at the input and at every "
                   "selected layer, coloured by class.")]))
    n_show = len(summary[0].labels)
    sections.insert(0, PageSection("At a glance", "", [PageFigure(
        _save(plot_summary(summary, title="Each layer's strongest units, first layer to last"), out / "summary.png"),
        f"For each layer (top to bottom), its {n_show} most responsive {'units' if n_show > 1 else 'unit'} that are "
        f"not dead and whose act-max worked: the {summary[0].examples.shape[1]} test examples that drive each one "
        "hardest (conv layers: the window around the maximum, the receptive field bright), then its act-max image "
        "(orange frame). Labels: the unit and its dissection label (what it detects, see below) or, if it has "
        "none, its largest test activation.")]))
    if dissection is not None:
        sections.insert(2, dissection)
    actmax_section = write_actmax_outputs(prior_choice, actmax_records, out, classes)
    if actmax_section is not None:
        sections.insert(2, actmax_section)
    settings = (f"layers: {', '.join(layers)}; units per layer: {opts.units}; k: {opts.k}; act-max steps: "
                f"{opts.steps} ({prior_choice.name} prior); seed: {opts.seed}; embedding: {opts.embedding}")
    return write_page(sections, out / "index.html", title=title, meta=[*meta, settings])
