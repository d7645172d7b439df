"""Choosing the act-max prior for a model: class prototypes under every prior, scored, the best one kept.

Used by :func:`replearn.visualize.render_all`; also callable on its own:

    table = compare_priors(model, splits)          # {"priors": {name: score}, "best": name, ...}
    result = run_actmax(choice, model, "blocks.1", units=range(16))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from replearn.actmax import PARAMS, ActMaxResult, maximize_activations
from replearn.errors import ReplearnError
from replearn.priors import DATA_PRIORS, DataPrior, load_prior
from replearn.recognizability import class_logit_floor, rank_key, real_statistics, score_prototypes

PRIOR_CHOICES = ("auto", *PARAMS)
DEFAULT_WEIGHTS = (10.0, 30.0, 100.0, 300.0)


@dataclass
class PriorChoice:
    """The prior act-max uses for a model, how it was chosen, and the scores behind the choice."""

    name: str
    prior: DataPrior | None
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    reason: str = ""
    scores: dict = field(default_factory=dict)  # {prior name: score_prototypes output + seconds}
    prototypes: dict = field(default_factory=dict)  # {prior name: pixel images (C, 1, H, W)}


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
    from replearn.reference import load_reference

    for name in names:
        check_prior_name(name)
    prior = load_prior(splits, seed=seed, use_cache=use_cache) if any(n in DATA_PRIORS for n in names) else None
    reference = load_reference(splits, seed=seed, use_cache=use_cache)
    stats = real_statistics(splits, seed=seed, use_cache=use_cache)
    floor = class_logit_floor(model, splits)
    scores, protos = {}, {}
    for name in names:
        choice = PriorChoice(name, prior if name in DATA_PRIORS else None, tuple(weights))
        start = time.perf_counter()
        result, pixels = class_prototypes(choice, model, splits, steps=steps, seed=seed, floor=floor)
        seconds = time.perf_counter() - start
        score = score_prototypes(model, pixels, splits, reference, stats)
        score["seconds"] = seconds
        if result.prior_weights is not None:
            for row, w in zip(score["classes"], result.prior_weights.tolist()):
                row["prior_weight"] = w
        scores[name], protos[name] = score, pixels
    best = max(names, key=lambda n: rank_key(scores[n]["summary"]))
    s = scores[best]["summary"]
    reason = (f"best recognizability score of {', '.join(names)}: {s['all']}/{s['classes']} class prototypes "
              "meet every target")
    return PriorChoice(best, prior if best in DATA_PRIORS else None, tuple(weights), reason, scores, protos)


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


def score_table_rows(choice: PriorChoice) -> list[list[str]]:
    """The summary table for a page: a header row, then one row per scored prior."""
    header = ["prior", "recognized (mean conf.)", "own logit >= p99", "5-NN dist. in p5-p95",
              "spectral centroid in p5-p95", "not a copy", "all targets", "seconds"]
    rows = [header]
    for name, score in choice.scores.items():
        s = score["summary"]
        n = s["classes"]
        rows.append([name + (" (chosen)" if name == choice.name else ""),
                     f"{s['recognized']}/{n} ({s['mean_confidence']:.2f})", f"{s['maximizer']}/{n}",
                     f"{s['knn5_in_band']}/{n}", f"{s['centroid_in_band']}/{n}", f"{s['not_copy']}/{n}",
                     f"{s['all']}/{n}", f"{score['seconds']:.1f}"])
    return rows


def hidden_floor(model: nn.Module, layer: str, units: Sequence[int], images: torch.Tensor, normalize) -> torch.Tensor:
    """Each unit's act-max objective on its top-1 image of ``images`` (uint8): the activation to reach, (U,)."""
    from replearn.recording import capture_activations

    acts = capture_activations(model, images, layers=[layer], pool="mean", normalize=normalize)[layer]
    return acts[:, list(units)].amax(0)
