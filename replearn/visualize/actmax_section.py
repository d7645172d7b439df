"""The run page's act-max parts: each layer's act-max caption, and the "Act-max recognizability" section.

The computing (the prior choice, the ascent, the scores, the controls and margins) is
:mod:`replearn.actmax.choice`; this module only words, draws and writes it: ``actmax.json``, the
prior-comparison figure and the score table (the model, each control, and the margin, per prior).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from replearn.actmax.choice import CONTROL_LABELS, PriorChoice
from replearn.actmax.scoring import BAND, COPY_PERCENTILE, CRITERIA, LOGIT_PERCENTILE
from replearn.runs.atomic import atomic_write
from replearn.runs.layout import json_safe
from replearn.visualize.page import PageFigure, PageSection
from replearn.viz.actmax_plot import plot_prior_comparison
from replearn.viz.grid import DPI

ACTMAX_JSON = "actmax.json"
PRIORS_FIGURE = "actmax_priors.png"
MARGIN_IS = ("margin = the trained model's count of classes meeting a target minus the best control's count under "
             "the same prior, settings, steps and seed; near 0 means the prior, not the model, made the prototypes pass")


def _counts(summary: dict) -> list[str]:
    n = summary["classes"]
    return [f"{summary['recognized']}/{n} ({summary['mean_confidence']:.2f})",
            *(f"{summary[c]}/{n}" for c in CRITERIA if c != "recognized")]


def score_table_rows(choice: PriorChoice, missing_controls: Mapping[str, str] | None = None) -> list[list[str]]:
    """The summary table for a page: a header row, then per scored prior the model, each control and the margin.

    ``missing_controls`` (control name -> why) adds one closing row per control that was not run.
    """
    header = ["prior", "network", "recognized (mean conf.)", "own logit >= p99", "5-NN dist. in p5-p95",
              "spectral centroid in p5-p95", "not a copy", "all targets"]
    rows = [header]
    for name, score in choice.scores.items():
        rows.append([name + (" (chosen)" if name == choice.name else ""), "trained", *_counts(score["summary"])])
        for control, control_score in choice.control_scores.get(name, {}).items():
            rows.append(["", CONTROL_LABELS.get(control, control), *_counts(control_score["summary"])])
        margin = choice.margins.get(name)
        if margin:
            rows.append(["", "margin (trained - best control)", *(f"{margin[c]:+d}" for c in CRITERIA)])
    for control, why in (missing_controls or {}).items():
        rows.append(["", f"{CONTROL_LABELS.get(control, control)}: {why}", *([""] * (len(header) - 2))])
    return rows


def actmax_caption(choice: PriorChoice, record: dict, kind: str, steps: int, seed: int) -> str:
    """The page caption of one layer's act-max figure."""
    n = len(record["units"])
    return (f"Inputs optimized by gradient ascent ({steps} steps, seed {seed}) to maximize each {kind}, with the "
            f"{choice.name} prior ({choice.reason}). {record['reached']}/{n} reach {record['floor_is']}; compare "
            "with the top-k images beside. Each image has its own grey scale; label: index and final activation.")


def _figure_rows(choice: PriorChoice) -> tuple[dict, dict]:
    """Prototypes per figure row (every prior on the model, then the chosen prior on each control) and their notes."""
    def note(summary: dict, margin: dict | None = None) -> str:
        text = f"{summary['all']}/{summary['classes']} all"
        return text + (f", margin {margin['all']:+d}" if margin else "")

    protos = dict(choice.prototypes)
    notes = {name: note(s["summary"], choice.margins.get(name)) for name, s in choice.scores.items()}
    for control, pixels in choice.control_prototypes.get(choice.name, {}).items():
        row = f"{CONTROL_LABELS.get(control, control)}\n({choice.name})"
        protos[row] = pixels
        notes[row] = note(choice.control_scores[choice.name][control]["summary"])
    return protos, notes


def write_actmax_outputs(choice: PriorChoice, records: dict, out_dir, classes: Sequence[str],
                         missing_controls: Mapping[str, str] | None = None) -> PageSection | None:
    """Write ``actmax.json`` and the prior-comparison figure; return the page section (None without scores).

    ``missing_controls`` (control name -> why it was not run) is said in the table and the json.
    """
    out = Path(out_dir)
    missing = dict(missing_controls or {})
    payload = {"prior": choice.name, "reason": choice.reason, "ranked_by": choice.ranked_by,
               "prior_weights": list(choice.weights),
               "targets": {"own_logit_percentile_at_least": LOGIT_PERCENTILE, "band_percentiles": list(BAND),
                           "copy_below_nearest_percentile": COPY_PERCENTILE},
               "scores": choice.scores, "controls": choice.control_scores, "margins": choice.margins,
               "margin_is": MARGIN_IS, "missing_controls": missing, "layers": records}
    text = json.dumps(json_safe(payload), indent=1)
    atomic_write(out / ACTMAX_JSON, lambda handle: handle.write(text))
    if not choice.scores:
        return None
    protos, notes = _figure_rows(choice)
    fig = plot_prior_comparison(protos, class_names=classes, row_notes=notes,
                                title="Class prototypes (act-max of each logit) under each prior, then the chosen "
                                      "prior on each control")
    path = out / PRIORS_FIGURE
    fig.savefig(path, dpi=DPI)
    controls = [CONTROL_LABELS.get(c, c) for c in choice.control_scores.get(choice.name, {})]
    against = (f"Each prior also runs, with the same settings, steps and seed, on {' and '.join(controls)} (the "
               "same architecture, untrained or trained on shuffled labels): a prior can make any network's "
               f"prototypes look like data. The {MARGIN_IS}; the prior is ranked by {choice.ranked_by}. "
               if controls else "No control network was run, so these counts may score the prior, not the model. ")
    intro = (f"Act-max uses the {choice.name} prior ({choice.reason}). Per prior, the class prototypes are "
             "scored against real test images of their class: recognized by a LeNet reference classifier "
             f"(count, mean confidence); the model's own logit at or above the {LOGIT_PERCENTILE:.0f}th percentile; "
             f"the mean distance to the 5 nearest training images and the spectral centroid inside the "
             f"{BAND[0]:.0f}th-{BAND[1]:.0f}th percentile band; not a copy (nearest training image no closer than "
             f"for {100 - COPY_PERCENTILE:.0f}% of real test images). {against}Details per class: {ACTMAX_JSON}.")
    caption = ("Class prototypes per prior (rows), on one 0..1 grey scale, then the chosen prior's prototypes of each "
               "control; the note under each row is the number of classes meeting every target (and the margin over "
               "the best control).")
    return PageSection("Act-max recognizability", intro, [PageFigure(path, caption)],
                       table=score_table_rows(choice, missing))
