"""A trained run's page: every figure for every chosen layer, and the index.html that shows them.

:func:`visualize_run` checks the config, :func:`draw_run` loads the run and swaps the new page in when complete;
:func:`render_all` draws the sections --
the opening figures (:mod:`.overview`), act-max (:mod:`.actmax_section`), dissection
(:mod:`.dissection_section`), for shapes runs the three levels (:mod:`.shapes_section`), and one section
per layer (:mod:`.layers`) -- and writes them in :data:`PAGE_ORDER`. The two slow computations, the
dissection and act-max's prior comparison, are kept in the per-user cache (:mod:`.reuse`): a second visualize
of an unchanged run reads them back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from replearn.actmax.choice import RANDOM_INIT, SHUFFLED
from replearn.analysis.controls import load_shuffled_control
from replearn.analysis.run import random_init_control
from replearn.conf.visualize import VisualizeConfig, validate_visualize
from replearn.device import resolve_device, resolve_threads
from replearn.errors import ReplearnError
from replearn.guards import check_visualize
from replearn.progress import progress
from replearn.recording.hooks import capture_activations
from replearn.runs import layout
from replearn.runs.load import load_run, resolve_run_dir
from replearn.visualize.actmax_section import ACTMAX_JSON, write_actmax_outputs
from replearn.visualize.dissection_section import dissection_section
from replearn.visualize.layers import PageInputs, layer_page, pick_inputs, select_layers
from replearn.visualize.overview import glance_section, overview_section
from replearn.visualize.page import PageSection, write_page
from replearn.visualize.reuse import prior_choice
from replearn.visualize.shapes_section import is_shapes, shapes_section
from replearn.visualize.staging import staged_page, unfinished
from replearn.viz import embed_2d

#: The page's sections by name, top to bottom. A name with nothing to show is left out: "actmax" without
#: scored priors (no training images), "dissection" with dissect=false, "shapes" (the three levels' masks beside
#: the units that match them) unless a data=shapes run is dissected. "layers" is one section per layer.
PAGE_ORDER = ("at_a_glance", "overview", "actmax", "dissection", "shapes", "layers")
OWN_FILES = ("index.html", ACTMAX_JSON)


def visualize_run(cfg: DictConfig, output_dir: str | os.PathLike | None = None) -> Path:
    """Check the visualize config ``cfg``, then :func:`draw_run`; returns index.html."""
    validate_visualize(cfg)
    return draw_run(cfg, output_dir)


def draw_run(cfg: DictConfig, output_dir: str | os.PathLike | None = None) -> Path:
    """Load the run named by ``cfg.run`` (a folder or ``latest``) and draw everything; returns index.html.

    Figures go to ``output_dir`` if given, else ``<run dir>/viz/``. ``cfg`` is taken as checked (the
    command line checks it before Hydra starts); :func:`visualize_run` checks it first. The page is
    built in a folder beside and swapped in when complete (:func:`~replearn.visualize.staging.staged_page`):
    a failed visualize leaves the previous page whole. Options whose page cannot fit in memory or whose
    act-max would run for hours are refused first (:func:`replearn.guards.check_visualize`).
    """
    device = resolve_device(cfg.device)
    threads = resolve_threads(cfg.get("threads", 0), device, key="threads")
    if device.type == "cpu":
        # Two threads on a core another process is using run many times slower than one (README, Performance).
        print(threads.describe())
    run_dir = resolve_run_dir(cfg.run, root=cfg.root)
    link = run_dir / layout.VIZ
    if output_dir is None and link.is_symlink() and not link.resolve().is_relative_to(run_dir.resolve()):
        raise ReplearnError(f"{link} is a link to {link.resolve()}, outside the run folder; refusing to write there: "
                            "remove the link (the figures go into <run>/viz/)")
    loaded = load_run(run_dir, device=device)
    splits = loaded.splits()
    outputs = getattr(getattr(loaded.model, "head", None), "out_features", len(splits.classes))
    if outputs != len(splits.classes):  # act-max and the page pair every logit with a class
        raise ReplearnError(f"{run_dir} has {outputs} outputs but its data ({splits.name}) has {len(splits.classes)} "
                            "classes (trained before the models followed data.num_classes): train it again to draw it")
    layers = select_layers(loaded.model, cfg.layers)
    check_visualize(cfg, loaded.cfg.model, test_images=len(splits.test_x), classes=len(splits.classes),
                    hidden_layers=sum(layer != "head" for layer in layers))
    out = Path(output_dir) if output_dir is not None else link
    meta = [f"run: {run_dir}", f"model: {OmegaConf.to_yaml(loaded.cfg.model).strip().replace(chr(10), ', ')}"]
    note = unfinished(run_dir)
    summary = layout.read_final(run_dir)
    if note is not None:  # never the summary of another checkpoint above these figures
        print(f"warning: {run_dir}: {note}", file=sys.stderr)
        meta.append(f"status: NOT FINISHED: {note}")
    elif summary is not None:  # the page is still useful without the summary line
        meta.append(f"status: {summary.get('status')}, test accuracy: {summary.get('test_acc')}")
    # Dissected beside the model (dissect=true) and always act-max's control: the prior runs on it too.
    control = random_init_control(loaded.cfg.model, int(loaded.cfg.seed)).to(device)
    shuffled, why = find_shuffled_control(run_dir, device)
    with staged_page(out, OWN_FILES, clear_stale=output_dir is None and not out.is_symlink()) as stage:
        drawn = render_all(loaded.model, splits, stage, cfg, device=device,
                           title=f"replearn: {run_dir.name}", meta=meta, control=control,
                           shuffled_control=shuffled, shuffled_missing=why)
        figures = drawn.read_text().count("<img ")
    page = out / drawn.name
    print(f"wrote {figures} figures and {page}")
    return page


def find_shuffled_control(run_dir: str | os.PathLike, device: torch.device) -> tuple[torch.nn.Module | None, str]:
    """The run's shuffled-label control network and, when there is none to use, why not (for the act-max table).

    The analysis trains it into the run folder; an unusable one (an unfinished run, a twin of another config)
    is left out with a warning, not an error.
    """
    absent = "not trained; analyse the run (analysis.enabled=true, or replearn.analysis.analyze_run on its folder) to train it"
    try:
        net = load_shuffled_control(run_dir, str(device))
    except ReplearnError as err:  # unfinished run, or a twin of another config: the page is still worth drawing
        print(f"warning: act-max without the shuffled-label control: {err}", file=sys.stderr)
        return None, f"not used: {err}"
    return net, "" if net is not None else absent


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
    shuffled_control: torch.nn.Module | None = None,
    shuffled_missing: str = "not trained; run the analysis",
) -> Path:
    """Draw every figure for the chosen layers of ``model`` on ``splits.test_x`` and write index.html.

    ``splits`` needs uint8 ``test_x`` (N, 1, 28, 28), ``test_y`` (N,), ``classes`` and ``normalize``.
    ``options`` is the visualize config (its ``run``/``root``/``device`` are not used here);
    without Hydra, pass ``VisualizeConfig(layers=[...], units=..., ...)``. ``control`` (the run's
    random-init network) is dissected next to the model in the "What each unit detects" section; it and
    ``shuffled_control`` (the architecture trained on shuffled labels) are act-max's controls: every prior
    also runs on them, and the recognizability table shows the model's margin over them (``shuffled_missing``:
    what it says when ``shuffled_control`` is None).
    """
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
    actmax_controls = {name: net.to(device).eval() for name, net in ((RANDOM_INIT, control), (SHUFFLED, shuffled_control))
                       if net is not None}
    missing = {name: why for name, net, why in ((RANDOM_INIT, control, "not given (render_all(control=...))"),
                                                (SHUFFLED, shuffled_control, shuffled_missing))
               if net is None}
    # The prior comparison is act-max's slow part: read back from the per-user cache for an unchanged run.
    prior = prior_choice(model, splits, opts, device, controls=actmax_controls)

    sections: dict[str, list[PageSection]] = {}
    dissected: dict = {}
    if opts.dissect:
        # Before the layers: the opening figure labels units with what they detect.
        section, dissected = dissection_section(model, splits, layers, out, n_images=opts.dissect_images,
                                                control=control.to(device) if control is not None else None,
                                                progress=opts.progress)
        sections["dissection"] = [section]
        if is_shapes(splits):  # the generator's exact masks: lines, parts, objects beside the units matching them
            sections["shapes"] = [shapes_section(model, splits, dissected, out, n_images=opts.dissect_images)]
    page = PageInputs(model, splits, opts, device, out, classes, inputs_idx, captions, feats, prior, dissected)
    overview = {"input (pixels)": embed_2d(images[embed_idx].float(), opts.embedding, opts.seed)}
    drawn = {}
    for layer in progress(layers, desc="layers", enabled=opts.progress):
        drawn[layer] = layer_page(page, layer)
        # The layer's embedding is drawn once, as its panel of the overview (a per-layer copy repeated it).
        overview[layer] = embed_2d(embed_acts[layer], opts.embedding, opts.seed)
    sections["layers"] = [d.section for d in drawn.values()]
    sections["overview"] = [overview_section(overview, labels[embed_idx], classes, opts.embedding, out)]
    sections["at_a_glance"] = [glance_section([d.summary for d in drawn.values()], out)]
    actmax = write_actmax_outputs(prior, {layer: d.actmax_record for layer, d in drawn.items()}, out, classes,
                                  missing_controls=missing)
    if actmax is not None:
        sections["actmax"] = [actmax]
    settings = (f"layers: {', '.join(layers)}; units per layer: {opts.units}; k: {opts.k}; act-max steps: "
                f"{opts.steps} ({prior.name} prior); seed: {opts.seed}; embedding: {opts.embedding}")
    ordered = [section for key in PAGE_ORDER for section in sections.get(key, [])]
    return write_page(ordered, out / "index.html", title=title, meta=[*meta, settings])
