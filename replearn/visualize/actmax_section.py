"""The run page's act-max parts: each layer's act-max caption, and the "Act-max recognizability" section.

The computing (the prior choice, the ascent, the scores) is :mod:`replearn.actmax.choice`; this module
only words, draws and writes it: ``actmax.json``, the prior-comparison figure and the score table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from replearn.actmax.choice import PriorChoice
from replearn.actmax.scoring import BAND, COPY_PERCENTILE, LOGIT_PERCENTILE
from replearn.runs.atomic import atomic_write
from replearn.runs.layout import json_safe
from replearn.visualize.page import PageFigure, PageSection
from replearn.viz.actmax_plot import plot_prior_comparison
from replearn.viz.grid import DPI

ACTMAX_JSON = "actmax.json"
PRIORS_FIGURE = "actmax_priors.png"


def score_table_rows(choice: PriorChoice) -> list[list[str]]:
    """The summary table for a page: a header row, then one row per scored prior."""
    header = ["prior", "recognized (mean conf.)", "own logit >= p99", "5-NN dist. in p5-p95",
              "spectral centroid in p5-p95", "not a copy", "all targets"]
    rows = [header]
    for name, score in choice.scores.items():
        s = score["summary"]
        n = s["classes"]
        rows.append([name + (" (chosen)" if name == choice.name else ""),
                     f"{s['recognized']}/{n} ({s['mean_confidence']:.2f})", f"{s['maximizer']}/{n}",
                     f"{s['knn5_in_band']}/{n}", f"{s['centroid_in_band']}/{n}", f"{s['not_copy']}/{n}",
                     f"{s['all']}/{n}"])
    return rows


def actmax_caption(choice: PriorChoice, record: dict, kind: str, steps: int, seed: int) -> str:
    """The page caption of one layer's act-max figure."""
    n = len(record["units"])
    return (f"Inputs optimized by gradient ascent ({steps} steps, seed {seed}) to maximize each {kind}, with the "
            f"{choice.name} prior ({choice.reason}). {record['reached']}/{n} reach {record['floor_is']}; compare "
            "with the top-k images beside. Each image has its own grey scale; label: index and final activation.")


def write_actmax_outputs(choice: PriorChoice, records: dict, out_dir, classes: Sequence[str]) -> PageSection | None:
    """Write ``actmax.json`` and the prior-comparison figure; return the page section (None without scores)."""
    out = Path(out_dir)
    payload = {"prior": choice.name, "reason": choice.reason, "prior_weights": list(choice.weights),
               "targets": {"own_logit_percentile_at_least": LOGIT_PERCENTILE, "band_percentiles": list(BAND),
                           "copy_below_nearest_percentile": COPY_PERCENTILE},
               "scores": choice.scores, "layers": records}
    text = json.dumps(json_safe(payload), indent=1)
    atomic_write(out / ACTMAX_JSON, lambda handle: handle.write(text))
    if not choice.scores:
        return None
    notes = {name: f"{s['summary']['all']}/{s['summary']['classes']} all" for name, s in choice.scores.items()}
    fig = plot_prior_comparison(choice.prototypes, class_names=classes, row_notes=notes,
                                title="Class prototypes (act-max of each logit) under each prior")
    path = out / PRIORS_FIGURE
    fig.savefig(path, dpi=DPI)
    intro = (f"Act-max uses the {choice.name} prior ({choice.reason}). Per prior, the class prototypes are "
             "scored against real test images of their class: recognized by a LeNet reference classifier "
             f"(count, mean confidence); the model's own logit at or above the {LOGIT_PERCENTILE:.0f}th percentile; "
             f"the mean distance to the 5 nearest training images and the spectral centroid inside the "
             f"{BAND[0]:.0f}th-{BAND[1]:.0f}th percentile band; not a copy (nearest training image no closer than "
             f"for {100 - COPY_PERCENTILE:.0f}% of real test images). Details per class: {ACTMAX_JSON}.")
    return PageSection("Act-max recognizability", intro, [
        PageFigure(path, "Class prototypes per prior (rows), on one 0..1 grey scale; the note under each prior is "
                         "the number of classes meeting every target.")], table=score_table_rows(choice))
