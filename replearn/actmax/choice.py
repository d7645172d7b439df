"""Choosing the act-max prior for a model: class prototypes under every prior, scored against controls, the best kept.

Each prior also runs, with the same settings, steps and seed, on control networks of the same architecture
(``controls``: the run's random-init network, the shuffled-label one when trained). The trained model's score
is its margin over them (:func:`replearn.actmax.scoring.margins`), and ``auto`` ranks priors by the margin over
the random-init control. Computing only; the run page's act-max section (figures, captions, tables,
actmax.json) is :mod:`replearn.visualize.actmax_section`. Callable on its own:

    choice = compare_priors(model, splits, controls={"random_init": random_init_control(run.cfg.model, run.cfg.seed)})
    choice.margins["gmm"]["recognized"]            # trained count minus the best control's
    result = run_actmax(choice, model, "blocks.1", units=range(16))
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from replearn.actmax.ascent import PARAMS, ActMaxResult, maximize_activations
from replearn.actmax.priors import DATA_PRIORS, DataPrior, load_prior
from replearn.actmax.reference import load_reference
from replearn.actmax.scoring import class_logit_floor, margins, rank_key, real_statistics, score_prototypes, test_logits
from replearn.device import single_thread
from replearn.errors import ReplearnError
from replearn.recording.hooks import capture_activations

PRIOR_CHOICES = ("auto", *PARAMS)
DEFAULT_WEIGHTS = (0.3, 1.0, 3.0)
# Control networks' names in ``controls`` and how the page calls them.
RANDOM_INIT, SHUFFLED = "random_init", "shuffled_labels"
CONTROL_LABELS = {RANDOM_INIT: "random-init control", SHUFFLED: "shuffled-label control"}


@dataclass
class PriorChoice:
    """The prior act-max uses for a model, how it was chosen, and the scores behind the choice."""

    name: str
    prior: DataPrior | None
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    reason: str = ""
    scores: dict = field(default_factory=dict)  # {prior name: score_prototypes output + seconds}
    prototypes: dict = field(default_factory=dict)  # {prior name: pixel images (C, 1, H, W)}
    results: dict = field(default_factory=dict)  # {prior name: the head's ActMaxResult}
    # Wall seconds of each prior's class prototypes (kept off the page and json, which are seeded and reproducible).
    seconds: dict = field(default_factory=dict)
    control_scores: dict = field(default_factory=dict)  # {prior name: {control name: score_prototypes output}}
    control_prototypes: dict = field(default_factory=dict)  # {prior name: {control name: pixels (C, 1, H, W)}}
    margins: dict = field(default_factory=dict)  # {prior name: {criterion: trained count - best control's}}
    control_seconds: dict = field(default_factory=dict)  # {prior name: wall seconds of all its control runs}
    ranked_by: str = ""  # "margin over the random-init control" or "raw score"

    def to_payload(self) -> dict:
        """Every field but ``prior`` as tensors and plain values (for the per-user cache, which loads with
        ``weights_only``); the prior is fitted per dataset and cached on its own (:func:`load_prior`)."""
        results = {name: result_payload(r) for name, r in self.results.items()}
        return {"name": self.name, "weights": list(self.weights), "reason": self.reason,
                "scores": self.scores, "prototypes": self.prototypes, "results": results, "seconds": self.seconds,
                "control_scores": self.control_scores, "control_prototypes": self.control_prototypes,
                "margins": self.margins, "control_seconds": self.control_seconds, "ranked_by": self.ranked_by}

    @classmethod
    def from_payload(cls, payload: dict, prior: DataPrior | None) -> PriorChoice:
        """The choice :meth:`to_payload` wrote, with ``prior`` (the fitted prior of ``payload["name"]``, or None)."""
        fields = dict(payload)
        fields["weights"] = tuple(fields["weights"])
        fields["results"] = {name: ActMaxResult(**r) for name, r in fields["results"].items()}
        return cls(prior=prior, **fields)


def result_payload(result: ActMaxResult) -> dict:
    """An act-max result as tensors and plain values (for the per-user cache); ``ActMaxResult(**payload)`` restores it."""
    return {"images": result.images, "objective_start": result.objective_start, "objective_end": result.objective_end,
            "objective_history": result.objective_history, "units": list(result.units), "layer": result.layer,
            "prior_weights": result.prior_weights}


def check_prior_name(name: str) -> None:
    """One line for an unknown prior name."""
    if name not in PRIOR_CHOICES:
        raise ReplearnError(f"prior={name!r} is invalid: choose one of {', '.join(PRIOR_CHOICES)}")


def run_actmax(choice: PriorChoice, model: nn.Module, layer: str, units: Sequence[int], steps: int = 256,
               seed: int = 0, floor: torch.Tensor | None = None, mean: float = 0.1307, std: float = 0.3081,
               progress: bool = False) -> ActMaxResult:
    """Act-max of ``units`` of ``layer`` with the chosen prior; ``floor`` (U,) is the activation to reach."""
    return maximize_activations(model, layer, units=list(units), steps=steps, seed=seed, param=choice.name,
                                prior=choice.prior, prior_weight=list(choice.weights), objective_floor=floor,
                                progress=progress, mean=mean, std=std)


def class_prototypes(choice: PriorChoice, model: nn.Module, splits, steps: int = 256, seed: int = 0,
                     floor: torch.Tensor | None = None) -> tuple[ActMaxResult, torch.Tensor]:
    """Act-max of every class logit (``head``); returns the result and its images as pixels in [0, 1]."""
    n_classes = len(splits.classes)
    result = run_actmax(choice, model, "head", range(n_classes), steps=steps, seed=seed, floor=floor,
                        mean=float(splits.mean), std=float(splits.std))
    pixels = (result.images * float(splits.std) + float(splits.mean)).clamp(0, 1)  # (C, 1, H, W)
    return result, pixels


def _scored_prototypes(choice: PriorChoice, model: nn.Module, splits, steps: int, seed: int, logits: torch.Tensor,
                       reference: nn.Module, stats: dict) -> tuple[dict, torch.Tensor, ActMaxResult, float]:
    """One network's class prototypes under ``choice``, scored: (score, pixels, result, wall seconds of the ascent).

    ``logits`` (N, classes): the network's :func:`test_logits`, computed once for every prior.
    """
    floor = class_logit_floor(model, splits, logits=logits)
    start = time.perf_counter()
    result, pixels = class_prototypes(choice, model, splits, steps=steps, seed=seed, floor=floor)
    seconds = time.perf_counter() - start
    score = score_prototypes(model, pixels, splits, reference, stats, logits=logits)
    if result.prior_weights is not None:
        for row, w in zip(score["classes"], result.prior_weights.tolist()):
            row["prior_weight"] = w
    return score, pixels, result, seconds


def compare_priors(model: nn.Module, splits, names: Sequence[str] = PARAMS, steps: int = 256, seed: int = 0,
                   weights: Sequence[float] = DEFAULT_WEIGHTS, use_cache: bool = True,
                   controls: Mapping[str, nn.Module] | None = None) -> PriorChoice:
    """Score the class prototypes of ``model`` and of each of ``controls`` under each prior in ``names``.

    ``controls`` (name -> network of the same architecture, on the model's device) run with the same prior,
    steps, seed and weights; each is held to its own logit floor. The choice ranks by :func:`rank_key` on the
    margin over ``controls["random_init"]``, or on the raw score when that control is not given. Needs
    ``splits.train_x`` (uint8) for the data priors, the reference classifier and the nearest-neighbour
    statistics; all three are fitted once per dataset, cached, and shared by the model and its controls.
    """
    for name in names:
        check_prior_name(name)
    controls = dict(controls or {})
    prior = load_prior(splits, seed=seed, use_cache=use_cache) if any(n in DATA_PRIORS for n in names) else None
    reference = load_reference(splits, seed=seed, use_cache=use_cache)
    stats = real_statistics(splits, seed=seed, use_cache=use_cache)
    logits = test_logits(model, splits)  # (N, classes), and one per control: shared by every prior
    control_logits = {c: test_logits(net, splits) for c, net in controls.items()}
    scores, protos, results, seconds_by_prior = {}, {}, {}, {}
    control_scores, control_protos, margin_by_prior, control_seconds = {}, {}, {}, {}
    for name in names:
        choice = PriorChoice(name, prior if name in DATA_PRIORS else None, tuple(weights))
        scores[name], protos[name], results[name], seconds_by_prior[name] = _scored_prototypes(
            choice, model, splits, steps, seed, logits, reference, stats)
        control_scores[name], control_protos[name], control_seconds[name] = {}, {}, 0.0
        for c, net in controls.items():
            score, pixels, _, seconds = _scored_prototypes(choice, net, splits, steps, seed, control_logits[c],
                                                           reference, stats)
            control_scores[name][c], control_protos[name][c] = score, pixels
            control_seconds[name] += seconds
        margin_by_prior[name] = margins(scores[name]["summary"],
                                        {c: s["summary"] for c, s in control_scores[name].items()})
    best = best_prior(scores, control_scores)
    s = scores[best]["summary"]
    if RANDOM_INIT in controls:
        ranked_by = "margin over the random-init control"
        m = s["all"] - control_scores[best][RANDOM_INIT]["summary"]["all"]
        reason = (f"largest margin over the random-init control of {', '.join(names)}: {s['all']}/{s['classes']} "
                  f"class prototypes meet every target, {m:+d} on the control")
    else:
        ranked_by = "raw score"
        reason = (f"best raw recognizability score of {', '.join(names)}: {s['all']}/{s['classes']} class prototypes "
                  "meet every target (no random-init control given, so the prior is not checked against one)")
    return PriorChoice(best, prior if best in DATA_PRIORS else None, tuple(weights), reason, scores, protos, results,
                       seconds_by_prior, control_scores, control_protos, margin_by_prior, control_seconds, ranked_by)


def best_prior(scores: Mapping[str, dict], control_scores: Mapping[str, Mapping[str, dict]] | None = None) -> str:
    """The prior whose score ranks first by :func:`rank_key`, on the margin over its random-init control if scored."""
    def key(name: str) -> tuple:
        control = (control_scores or {}).get(name, {}).get(RANDOM_INIT)
        return rank_key(scores[name]["summary"], control["summary"] if control is not None else None)

    return max(scores, key=key)


def choose_prior(model: nn.Module, splits, name: str = "auto", steps: int = 256, seed: int = 0,
                 weights: Sequence[float] = DEFAULT_WEIGHTS, score: bool = True,
                 controls: Mapping[str, nn.Module] | None = None) -> PriorChoice:
    """``auto``: :func:`compare_priors` over every prior; a fixed name: that prior (scored too unless ``score=False``).

    ``controls`` go to :func:`compare_priors` (scored beside the model; ``random_init`` ranks the priors).
    """
    check_prior_name(name)
    has_train = getattr(splits, "train_x", None) is not None and len(splits.train_x) > 1
    if not has_train:
        if name in DATA_PRIORS:
            raise ReplearnError(f"prior={name} needs the training images to fit it; pass splits with train_x or use "
                                "prior=pixel")
        return PriorChoice("pixel" if name == "auto" else name, None, tuple(weights),
                           "no training images to fit a prior or score against")
    if name == "auto":
        return compare_priors(model, splits, steps=steps, seed=seed, weights=weights, controls=controls)
    if score:
        choice = compare_priors(model, splits, names=[name], steps=steps, seed=seed, weights=weights, controls=controls)
        choice.reason = "set in the config"
        return choice
    prior = load_prior(splits, seed=seed) if name in DATA_PRIORS else None
    return PriorChoice(name, prior, tuple(weights), "set in the config")


def hidden_floor(model: nn.Module, layer: str, units: Sequence[int], images: torch.Tensor, normalize) -> torch.Tensor:
    """Each unit's act-max objective on its top-1 image of ``images`` (uint8): the activation to reach, (U,)."""
    acts = capture_activations(model, images, layers=[layer], pool="mean", normalize=normalize)[layer]
    return acts[:, list(units)].amax(0)


def prepare_actmax(model: nn.Module, splits, opts, device: torch.device,
                   controls: Mapping[str, nn.Module] | None = None) -> PriorChoice:
    """The prior for a visualize run: ``opts.prior`` (``fourier=true`` with ``prior=auto`` means fourier).

    Scored against ``controls`` (name -> network on ``device``), see :func:`compare_priors`.
    """
    name = getattr(opts, "prior", "auto")
    if getattr(opts, "fourier", False) and name == "auto":
        name = "fourier"
    weights = tuple(float(w) for w in getattr(opts, "prior_weights", DEFAULT_WEIGHTS))
    with single_thread() if device.type == "cpu" else nullcontext():
        return choose_prior(model, splits, name, steps=opts.steps, seed=opts.seed, weights=weights, controls=controls)


def layer_actmax(choice: PriorChoice, model: nn.Module, layer: str, units: Sequence[int], splits, opts,
                 device: torch.device) -> tuple[ActMaxResult, dict]:
    """Act-max of ``units`` of ``layer`` with the chosen prior, and a record of how far each unit got.

    Hidden units must reach the activation of their top-1 test image; class logits the 99th percentile
    of their logit over real test images of the class. The record holds both and the fraction reached.
    """
    is_head = layer == "head"
    if is_head:
        floor = class_logit_floor(model, splits)[list(units)]
        bar = "the 99th percentile of their logit over real test images of the class"
    else:
        floor = hidden_floor(model, layer, units, splits.test_x.cpu(), splits.normalize)
        bar = "the activation of their top-1 test image (for channels: the mean over positions, which act-max maximizes)"
    cached_result = choice.results.get(choice.name)
    if is_head and cached_result is not None and cached_result.units == list(units):
        result = cached_result  # the class prototypes scored while choosing the prior
    else:
        with single_thread() if device.type == "cpu" else nullcontext():
            result = run_actmax(choice, model, layer, units, steps=opts.steps, seed=opts.seed, floor=floor,
                                mean=float(splits.mean), std=float(splits.std), progress=opts.progress)
    reached = result.objective_end.float() >= floor.float()
    record = {"units": list(units), "objective": result.objective_end.tolist(), "floor": floor.tolist(),
              "floor_is": bar, "reached": int(reached.sum()), "reached_fraction": float(reached.double().mean()),
              "prior_weights": None if result.prior_weights is None else result.prior_weights.tolist()}
    return result, record
