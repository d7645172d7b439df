"""What a second visualize of an unchanged run reads back instead of computing, its slowest parts: the dissection
(:func:`dissect_pair`), the act-max prior comparison (:func:`prior_choice`) and a layer's act-max (:func:`layer_actmax`).

They are kept in the per-user cache (:func:`replearn.cache.cached`: written atomically, checksummed, rebuilt
with one warning line when damaged), never in the run folder. The key holds the content of every network
involved (weights and architecture), the probe images and every option that changes the result, so a
network whose weights changed, other options or other data compute afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from replearn.actmax.ascent import ActMaxResult
from replearn.actmax.choice import DEFAULT_WEIGHTS, PriorChoice, prepare_actmax, result_payload
from replearn.actmax.choice import layer_actmax as compute_layer_actmax
from replearn.actmax.priors import DATA_PRIORS, PRIOR_VERSION, load_prior
from replearn.actmax.reference import REFERENCE_VERSION
from replearn.actmax.scoring import STATS_VERSION
from replearn.cache import cache_dir, cached, content_key
from replearn.dissection import DissectionSettings, dissect_model
from replearn.dissection.concept_cache import CONCEPT_VERSION
from replearn.dissection.result import LayerDissection

# Bump when dissect_model gives another result for the same networks, images and settings (maps, thresholds,
# references, the null, how labels are chosen): otherwise a second visualize would show the old computation.
DISSECTION_VERSION = 2
# Bump when the prior comparison gives another result for the same networks and options (the ascent, how the
# priors, the reference or the statistics are used, the scores, the ranking): the same reason.
PRIORS_VERSION = 1
# Bump when a layer's act-max (its floor, the ascent, the record) gives another result for the same inputs.
LAYER_ACTMAX_VERSION = 1
DISSECTION_SUB, PRIORS_SUB, LAYER_ACTMAX_SUB = "visualize_dissection", "visualize_priors", "visualize_layer_actmax"


def network_parts(net: nn.Module | None) -> list:
    """A network's identity for a cache key: its class, its repr (layer sizes, activations) and every state tensor."""
    if net is None:
        return ["no network"]
    parts: list = [type(net).__qualname__, repr(net)]
    for name, value in net.state_dict().items():
        parts += [name, value]
    return parts


def _device_type(net: nn.Module) -> str:
    """Where ``net`` computes: a result from another device differs in its last bits, so it is keyed apart."""
    param = next(net.parameters(), None)
    return param.device.type if param is not None else "cpu"


def _reuse(sub: str, key: str, version: int, what: str | None, compute: Callable[[], Any],
           to_payload: Callable[[Any], dict], from_payload: Callable[[dict], Any]) -> Any:
    """``compute()``, or its result read back from ``<cache>/<sub>/<key>.pt`` (said in one line unless ``what`` is None)."""
    made, restored = [], []

    def build() -> dict:
        made.append(compute())
        return {"version": version, "result": to_payload(made[0])}

    def validate(payload: dict) -> None:
        if payload.get("version") != version:
            raise ValueError(f"written for another version of {what or sub}")
        restored.append(from_payload(payload["result"]))  # a malformed entry raises here and is rebuilt

    cached(sub, key, build, validate)
    if made:
        return made[0]
    if what is not None:
        print(f"reused {what}, computed before for these networks, data and options ({cache_dir(sub) / key}.pt)")
    return restored[-1]


def dissect_pair(model: nn.Module, control: nn.Module | None, splits, layers: Sequence[str], concepts,
                 n_images: int, settings: DissectionSettings,
                 progress: bool = False) -> tuple[dict[str, LayerDissection], dict[str, LayerDissection] | None]:
    """Dissect ``layers`` of ``model`` and of ``control`` (None: no control) on the first ``n_images`` test images.

    ``concepts``: the masks of those images (:func:`~replearn.dissection.concept_cache.concepts_for`). A pair
    of networks dissected before on the same images with the same settings is read back from the per-user cache.
    Returns ``({layer: LayerDissection}, the control's or None)``.
    """
    images, labels = splits.test_x[:n_images].cpu(), splits.test_y[:n_images].cpu()  # (n, 1, H, W), (n,)
    layers = list(layers)
    key = content_key("dissection", DISSECTION_VERSION, CONCEPT_VERSION, *network_parts(model), "control",
                      *network_parts(control), layers, repr(settings), splits.name, list(splits.classes),
                      repr(getattr(splits, "data_cfg", None)), float(splits.mean), float(splits.std), images, labels,
                      _device_type(model))

    def compute() -> tuple[dict, dict | None]:
        result = dissect_model(model, images, concepts, layers, splits.normalize, float(splits.std), settings,
                               progress=progress, labels=labels)  # labels: the null permutes masks within classes
        if control is None:
            return result, None
        return result, dissect_model(control.eval(), images, concepts, layers, splits.normalize, float(splits.std),
                                     settings, labels=labels)

    def to_payload(pair: tuple) -> dict:
        return {name: None if part is None else {layer: d.to_payload() for layer, d in part.items()}
                for name, part in zip(("model", "control"), pair)}

    def from_payload(payload: dict) -> tuple:
        pair = tuple(None if payload[name] is None else
                     {layer: LayerDissection.from_payload(d) for layer, d in payload[name].items()}
                     for name in ("model", "control"))
        if list(pair[0]) != layers or (pair[1] is None) != (control is None):
            raise ValueError("it holds other layers or networks than its key says")
        return pair

    return _reuse(DISSECTION_SUB, key, DISSECTION_VERSION, "the dissection", compute, to_payload, from_payload)


def _splits_parts(splits) -> list:
    """What of the data the prior comparison reads: the test split, and the training split it scores against."""
    parts = [splits.name, list(splits.classes), float(splits.mean), float(splits.std), splits.test_x, splits.test_y]
    for name in ("train_x", "train_y"):
        value = getattr(splits, name, None)
        parts += [name, value if isinstance(value, torch.Tensor) else None]
    return parts


def prior_choice(model: nn.Module, splits, opts, device: torch.device,
                 controls: Mapping[str, nn.Module] | None = None) -> PriorChoice:
    """:func:`~replearn.actmax.choice.prepare_actmax` (every prior's class prototypes on ``model`` and ``controls``,
    scored), read back from the per-user cache when these networks were compared with the same options before."""
    controls = dict(controls or {})
    weights = tuple(float(w) for w in getattr(opts, "prior_weights", DEFAULT_WEIGHTS))
    control_parts = [part for name in sorted(controls) for part in (name, *network_parts(controls[name]))]
    key = content_key("priors", PRIORS_VERSION, PRIOR_VERSION, REFERENCE_VERSION, STATS_VERSION,
                      *network_parts(model), "controls", *control_parts, getattr(opts, "prior", "auto"),
                      bool(getattr(opts, "fourier", False)), int(opts.steps), int(opts.seed), weights,
                      *_splits_parts(splits), device.type)

    def from_payload(payload: dict) -> PriorChoice:
        name = payload["name"]
        # The fitted prior is cached per dataset on its own; the choice holds only which one.
        return PriorChoice.from_payload(payload, load_prior(splits, seed=int(opts.seed)) if name in DATA_PRIORS else None)

    return _reuse(PRIORS_SUB, key, PRIORS_VERSION, "the act-max prior comparison",
                  lambda: prepare_actmax(model, splits, opts, device, controls=controls),
                  PriorChoice.to_payload, from_payload)


def layer_actmax(choice: PriorChoice, model: nn.Module, layer: str, units: Sequence[int], splits, opts,
                 device: torch.device) -> tuple[ActMaxResult, dict]:
    """:func:`~replearn.actmax.choice.layer_actmax` (act-max of ``units`` of ``layer`` and its record), read back
    from the per-user cache when these units of this network were maximized with the same prior and options."""
    prior = choice.prior
    # A prior from load_prior carries the content key it was fitted under; any other is keyed by its tensors.
    prior_parts = [None] if prior is None else [prior.key] if prior.key else [
        part for name, value in prior.state().items() for part in (name, value)]
    key = content_key("layer-actmax", LAYER_ACTMAX_VERSION, PRIOR_VERSION, *network_parts(model), layer,
                      [int(u) for u in units], choice.name, list(choice.weights), *prior_parts, int(opts.steps),
                      int(opts.seed), splits.name, float(splits.mean), float(splits.std), splits.test_x, splits.test_y,
                      device.type)  # the test images set each unit's floor
    return _reuse(LAYER_ACTMAX_SUB, key, LAYER_ACTMAX_VERSION, None,
                  lambda: compute_layer_actmax(choice, model, layer, units, splits, opts, device),
                  lambda pair: {"result": result_payload(pair[0]), "record": pair[1]},
                  lambda payload: (ActMaxResult(**payload["result"]), payload["record"]))
