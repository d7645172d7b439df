"""Choosing the act-max prior for a model: class prototypes under every prior, scored, the best one kept.

Computing only; the run page's act-max section (figures, captions, tables, actmax.json) is
:mod:`replearn.visualize.actmax_section`. Callable on its own:

    table = compare_priors(model, splits)          # {"priors": {name: score}, "best": name, ...}
    result = run_actmax(choice, model, "blocks.1", units=range(16))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from replearn.actmax.ascent import PARAMS, ActMaxResult, maximize_activations
from replearn.actmax.priors import DATA_PRIORS, DataPrior, load_prior
from replearn.actmax.reference import load_reference
from replearn.actmax.scoring import class_logit_floor, rank_key, real_statistics, score_prototypes
from replearn.device import single_thread
from replearn.errors import ReplearnError
from replearn.recording.hooks import capture_activations

PRIOR_CHOICES = ("auto", *PARAMS)
DEFAULT_WEIGHTS = (0.3, 1.0, 3.0)


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


def compare_priors(model: nn.Module, splits, names: Sequence[str] = PARAMS, steps: int = 256, seed: int = 0,
                   weights: Sequence[float] = DEFAULT_WEIGHTS, use_cache: bool = True) -> PriorChoice:
    """Score the class prototypes of ``model`` under each prior in ``names``; the best by :func:`rank_key` is chosen.

    Needs ``splits.train_x`` (uint8) for the data priors, the reference classifier and the nearest-neighbour
    statistics; all three are fitted once per dataset and cached.
    """
    for name in names:
        check_prior_name(name)
    prior = load_prior(splits, seed=seed, use_cache=use_cache) if any(n in DATA_PRIORS for n in names) else None
    reference = load_reference(splits, seed=seed, use_cache=use_cache)
    stats = real_statistics(splits, seed=seed, use_cache=use_cache)
    floor = class_logit_floor(model, splits)
    scores, protos, results, seconds_by_prior = {}, {}, {}, {}
    for name in names:
        choice = PriorChoice(name, prior if name in DATA_PRIORS else None, tuple(weights))
        start = time.perf_counter()
        result, pixels = class_prototypes(choice, model, splits, steps=steps, seed=seed, floor=floor)
        seconds = time.perf_counter() - start
        score = score_prototypes(model, pixels, splits, reference, stats)
        seconds_by_prior[name] = seconds
        if result.prior_weights is not None:
            for row, w in zip(score["classes"], result.prior_weights.tolist()):
                row["prior_weight"] = w
        scores[name], protos[name], results[name] = score, pixels, result
    best = max(names, key=lambda n: rank_key(scores[n]["summary"]))
    s = scores[best]["summary"]
    reason = (f"best recognizability score of {', '.join(names)}: {s['all']}/{s['classes']} class prototypes "
              "meet every target")
    return PriorChoice(best, prior if best in DATA_PRIORS else None, tuple(weights), reason, scores, protos, results,
                       seconds_by_prior)


def choose_prior(model: nn.Module, splits, name: str = "auto", steps: int = 256, seed: int = 0,
                 weights: Sequence[float] = DEFAULT_WEIGHTS, score: bool = True) -> PriorChoice:
    """``auto``: :func:`compare_priors` over every prior; a fixed name: that prior (scored too unless ``score=False``)."""
    check_prior_name(name)
    has_train = getattr(splits, "train_x", None) is not None and len(splits.train_x) > 1
    if not has_train:
        if name in DATA_PRIORS:
            raise ReplearnError(f"prior={name} needs the training images to fit it; pass splits with train_x or use "
                                "prior=pixel")
        return PriorChoice("pixel" if name == "auto" else name, None, tuple(weights),
                           "no training images to fit a prior or score against")
    if name == "auto":
        return compare_priors(model, splits, steps=steps, seed=seed, weights=weights)
    if score:
        choice = compare_priors(model, splits, names=[name], steps=steps, seed=seed, weights=weights)
        choice.reason = "set in the config"
        return choice
    prior = load_prior(splits, seed=seed) if name in DATA_PRIORS else None
    return PriorChoice(name, prior, tuple(weights), "set in the config")


def hidden_floor(model: nn.Module, layer: str, units: Sequence[int], images: torch.Tensor, normalize) -> torch.Tensor:
    """Each unit's act-max objective on its top-1 image of ``images`` (uint8): the activation to reach, (U,)."""
    acts = capture_activations(model, images, layers=[layer], pool="mean", normalize=normalize)[layer]
    return acts[:, list(units)].amax(0)


def prepare_actmax(model: nn.Module, splits, opts, device: torch.device) -> PriorChoice:
    """The prior for a visualize run: ``opts.prior`` (``fourier=true`` with ``prior=auto`` means fourier)."""
    name = getattr(opts, "prior", "auto")
    if getattr(opts, "fourier", False) and name == "auto":
        name = "fourier"
    weights = tuple(float(w) for w in getattr(opts, "prior_weights", DEFAULT_WEIGHTS))
    with single_thread() if device.type == "cpu" else nullcontext():
        return choose_prior(model, splits, name, steps=opts.steps, seed=opts.seed, weights=weights)


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
