"""Per-run analysis: probes, CKA, trainability and pattern complexity -> ``analysis.json``.

Everything is measured for the trained model and for a random-init control
of the same architecture (same seed as the run, so the control is exactly
the network the run started from: training seeds before building the model).
All per-layer lists are aligned with ``result["layers"]`` (forward order:
``input``, hidden blocks, ``logits``); a measure that does not apply to a
layer is ``null``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from replearn.analysis.cka import CentredLayers, MinibatchCKA
from replearn.analysis.complexity import (
    actmax_centroid,
    class_selectivity,
    effective_receptive_field,
    nanmean,
)
from replearn.analysis.features import INPUT, LOGITS, extract_features, layer_positions
from replearn.analysis.probes import probe_layers, shuffled_ridge_probe
from replearn.analysis.trainability import dead_unit_fraction, gradient_norms, layer_weights
from replearn.conf.analysis import AnalysisConfig, validate_analysis
from replearn.device import single_thread
from replearn.dissection import DissectionSettings, dissect_model
from replearn.dissection.concept_cache import concepts_for
from replearn.errors import ReplearnError
from replearn.models import build_model_from_config
from replearn.recording.hooks import capture_activations
from replearn.runs.atomic import atomic_write_json
from replearn.runs.layout import ANALYSIS, json_safe, read_analysis, read_final
from replearn.runs.load import load_run

ANALYSIS_NAME = ANALYSIS  # the name replearn.analysis has always exported


def as_analysis_config(cfg=None) -> AnalysisConfig:
    """An AnalysisConfig from None (defaults), a dict, a DictConfig or an AnalysisConfig; validated."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(AnalysisConfig), cfg if cfg is not None else {})
    except OmegaConfBaseException as exc:
        raise ReplearnError(f"invalid analysis config: {str(exc).splitlines()[0]}; see replearn/conf/analysis.py") from None
    validate_analysis(merged)
    return OmegaConf.to_object(merged)


def _module_name(key: str) -> str:
    return "head" if key == LOGITS else key


def _pick_units(dim: int, count: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(dim, generator=gen)[: min(count, dim)].tolist())


def _is_relu(block: nn.Module) -> bool:
    return isinstance(getattr(block, "act", None), nn.ReLU)


def _dead_fractions(model, feats: dict, images, normalize, batch_size: int) -> dict[str, float]:
    """Dead ReLU fraction per hidden block on the eval images (NaN for non-ReLU blocks)."""
    out, residual = {}, []
    for name in model.hidden_layers():
        block = model.get_submodule(name)
        if not _is_relu(block):
            out[name] = float("nan")
        elif getattr(block, "residual", False) or feats[name].shape[1] != layer_weights(model)[name].shape[0]:
            residual.append(name)  # block output is skip + ReLU (or projected): hook the ReLU itself
        else:
            out[name] = dead_unit_fraction(feats[name])
    if residual:
        relu = capture_activations(model, images, layers=[f"{n}.act" for n in residual], batch_size=batch_size,
                                   pool="max", normalize=normalize)
        for name in residual:
            out[name] = dead_unit_fraction(relu[f"{name}.act"])
    return out


def _minibatch_cka_grid(model, images, normalize, cfg: AnalysisConfig) -> torch.Tensor:
    """Within-model CKA on unpooled maps, streamed (unbiased minibatch HSIC)."""
    acc = MinibatchCKA()
    b = cfg.cka_batch_size
    for start in range(0, len(images) - b + 1, b):
        batch = images[start:start + b]
        acts = capture_activations(model, batch, layers=model.layer_names(), batch_size=b, pool="none", normalize=normalize)
        pixels = normalize(batch) if normalize is not None else batch.float()
        feats = {INPUT: pixels.flatten(1).cpu()}
        feats.update({(LOGITS if k == "head" else k): acts[k].flatten(1).cpu() for k in model.layer_names()})
        acc.update(feats)
    if acc.batches == 0:
        raise ReplearnError(f"analysis.cka_batch_size={b} exceeds n_eval={len(images)}; lower it")
    return acc.compute()


def _analyze_one(model, data: dict, cfg: AnalysisConfig, input_probe: dict | None, timing: dict, tag: str) -> tuple[dict, dict]:
    """All measures for one model; returns (per-layer block, eval features)."""
    t0 = time.perf_counter()
    common = dict(normalize=data["normalize"], pool=cfg.pool, max_dim=cfg.max_dim, seed=cfg.seed, batch_size=cfg.batch_size)
    f_train = extract_features(model, data["train_x"], **common)
    f_eval = extract_features(model, data["eval_x"], **common)
    keys = list(f_eval)
    timing[f"{tag}_features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    todo = [k for k in keys if not (k == INPUT and input_probe is not None)]
    probes = probe_layers({k: f_train[k] for k in todo}, data["train_y"], {k: f_eval[k] for k in todo},
                          data["eval_y"], method=cfg.probe_method, seed=cfg.seed)
    if input_probe is not None:
        probes[INPUT] = input_probe
    shuffled = _shuffled_floor(f_train, f_eval, data, cfg, input_probe)
    timing[f"{tag}_probes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dissection = _dissect(model, data, cfg)
    timing[f"{tag}_dissection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    is_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    # float32 products: ~2.5x faster than float64 and within 1e-5 of it (tests/test_cka.py).
    centred = CentredLayers(f_eval, dtype=torch.float32)
    grid, ratios = centred.grid(), centred.participation_ratios()
    if cfg.cka_minibatch and is_conv:
        grid = _minibatch_cka_grid(model, data["eval_x"], data["normalize"], cfg)
    timing[f"{tag}_cka"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    grads = gradient_norms(model, data["grad_x"], data["grad_y"], data["normalize"])
    dead = _dead_fractions(model, f_eval, data["eval_x"], data["normalize"], cfg.batch_size)
    timing[f"{tag}_trainability"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    first = data["eval_x"][: cfg.erf_images]
    erf_images = data["normalize"](first) if data["normalize"] else first.float()
    erf_images = erf_images.to(next(model.parameters()).device)
    block = {k: [] for k in ("probe_train_acc", "probe_eval_acc", "grad_norm", "grad_relative", "dead_fraction",
                             "class_selectivity", "participation_ratio", "participation_ratio_normalized",
                             "erf_area", "erf_radius", "actmax_spectral_centroid")}
    weights = layer_weights(model)
    with single_thread():
        _complexity(model, keys, f_eval, probes, grads, dead, ratios, erf_images, weights, block, data, cfg)
    block["cka"] = grid.tolist()
    timing[f"{tag}_complexity"] = time.perf_counter() - t0
    _fill_controls(block, keys, shuffled, dissection)
    return block, centred


def _shuffled_floor(f_train: dict, f_eval: dict, data: dict, cfg: AnalysisConfig, input_probe: dict | None) -> dict:
    """{layer: shuffled-label probe} (the input's is shared by both models, like its real probe)."""
    if cfg.probe_shuffles < 1:
        return {}
    out = {}
    for key in f_eval:
        if key == INPUT and input_probe is not None and "shuffled" in input_probe:
            out[key] = input_probe["shuffled"]
        elif not (torch.isfinite(f_train[key]).all() and torch.isfinite(f_eval[key]).all()):
            out[key] = {"eval_acc": float("nan"), "eval_acc_sd": float("nan"), "accs": []}
        else:
            out[key] = shuffled_ridge_probe(f_train[key], data["train_y"], f_eval[key], data["eval_y"],
                                            shuffles=cfg.probe_shuffles, num_classes=data["num_classes"], seed=cfg.seed)
    return out


def _dissect(model, data: dict, cfg: AnalysisConfig) -> dict:
    """{layer: LayerDissection} for every hidden block and the head, or {} when dissection is off."""
    if not cfg.dissection or data.get("concepts") is None:
        return {}
    settings = DissectionSettings(quantile=cfg.dissect_quantile, iou_threshold=cfg.dissect_iou,
                                  grad_images=cfg.dissect_grad_images, quantile_images=cfg.dissect_quantile_images)
    return dissect_model(model, data["dissect_x"], data["concepts"], normalize=data["normalize"],
                         std=data["std"], settings=settings)


DISSECT_KEYS = ("dissect_fraction_l1", "dissect_fraction_l2", "dissect_fraction_l3", "dissect_fraction_unlabelled",
                "dissect_mean_best_iou_l1", "dissect_mean_best_iou_l2", "dissect_mean_best_iou_l3", "dissect_method")


def _fill_controls(block: dict, keys: list[str], shuffled: dict, dissection: dict) -> None:
    """Per-layer lists of the shuffled-label floor and the dissection summaries (None where n/a)."""
    nan = float("nan")
    if shuffled:
        block["probe_shuffled_eval_acc"] = [shuffled[k]["eval_acc"] for k in keys]
        block["probe_shuffled_eval_acc_sd"] = [shuffled[k]["eval_acc_sd"] for k in keys]
    if not dissection:
        return
    for key in DISSECT_KEYS:
        block[key] = []
    summaries = {}
    for key in keys:
        d = dissection.get(_module_name(key)) if key != INPUT else None
        if d is None:
            for k in DISSECT_KEYS:
                block[k].append(None if k == "dissect_method" else nan)
            continue
        fractions, best = d.level_fractions(), d.mean_best_iou()
        for level in ("l1", "l2", "l3", "unlabelled"):
            block[f"dissect_fraction_{level}"].append(fractions[level])
        for level in ("l1", "l2", "l3"):
            block[f"dissect_mean_best_iou_{level}"].append(best[level])
        block["dissect_method"].append(d.method)
        summaries[_module_name(key)] = d.summary()
    block["_dissection"] = summaries


def _complexity(model, keys, f_eval, probes, grads, dead, ratios, erf_images, weights, block, data, cfg) -> None:
    """Fill ``block`` with one entry per layer for every per-layer measure."""
    nan = float("nan")
    for i, key in enumerate(keys):
        name = _module_name(key)
        block["probe_train_acc"].append(probes[key]["train_acc"])
        block["probe_eval_acc"].append(probes[key]["eval_acc"])
        block["grad_norm"].append(grads[name]["grad_norm"] if name in grads else nan)
        block["grad_relative"].append(grads[name]["relative"] if name in grads else nan)
        block["dead_fraction"].append(dead.get(name, nan))
        block["class_selectivity"].append(nanmean(class_selectivity(f_eval[key], data["eval_y"], data["num_classes"])))
        pr = ratios[key]
        block["participation_ratio"].append(pr)
        block["participation_ratio_normalized"].append(pr / f_eval[key].shape[1])
        if key == INPUT:
            block["erf_area"].append(nan)
            block["erf_radius"].append(nan)
            block["actmax_spectral_centroid"].append(nan)
            continue
        dim = f_eval[key].shape[1]
        # Units silent on every ERF image have no gradient: draw among the responsive ones.
        alive = (f_eval[key][: len(erf_images)].abs().sum(0) > 0).nonzero().flatten()
        n_units = weights[name].shape[0]
        if dim != n_units:  # randomly projected features no longer index units
            dim, alive = n_units, torch.arange(n_units)
        if cfg.erf_units > 0 and cfg.erf_images > 0 and len(alive) > 0:
            picks = _pick_units(len(alive), cfg.erf_units, cfg.seed + i)
            erf = effective_receptive_field(model, name, erf_images, alive[picks].tolist())
        else:
            erf = {"erf_area": nan, "erf_radius": nan}
        block["erf_area"].append(erf["erf_area"])
        block["erf_radius"].append(erf["erf_radius"])
        if cfg.actmax_units > 0 and cfg.actmax_steps > 0:
            units = _pick_units(dim, cfg.actmax_units, cfg.seed + i)
            block["actmax_spectral_centroid"].append(actmax_centroid(
                model, name, units, cfg.actmax_steps, cfg.seed, mean=data["mean"], std=data["std"]))
        else:
            block["actmax_spectral_centroid"].append(nan)


def _concepts(splits, n_eval: int, cfg: AnalysisConfig):
    """Concept masks of the first ``dissect_images`` evaluation images (``concepts_for``: the generator's for
    data=shapes, else morphology, cached per user)."""
    n = min(cfg.dissect_images, n_eval)
    return concepts_for(splits, n), splits.test_x[:n].cpu()


def analyze_model(model: nn.Module, splits, cfg=None, control: nn.Module | None = None) -> dict:
    """Analyse ``model`` on ``splits`` (a :class:`replearn.data.Splits`); ``control`` is its random-init twin.

    Probes are fitted on ``n_train`` training images (seeded subset) and
    every measure is scored on the first ``n_eval`` test images. Returns a
    JSON-serializable dict (NaN written as null).
    """
    cfg = as_analysis_config(cfg)
    start = time.perf_counter()
    device = torch.device(cfg.device)
    model = model.to(device).eval()
    n_train = min(cfg.n_train, len(splits.train_x))
    order = torch.randperm(len(splits.train_x), generator=torch.Generator().manual_seed(cfg.seed))[:n_train]
    train_x, train_y = splits.train_x[order], splits.train_y[order]
    n_eval = min(cfg.n_eval, len(splits.test_x))
    if n_eval < 2:
        raise ReplearnError(f"analysis needs at least 2 test images, the split has {len(splits.test_x)}")
    data = {
        "normalize": splits.normalize, "train_x": train_x, "train_y": train_y,
        "eval_x": splits.test_x[:n_eval], "eval_y": splits.test_y[:n_eval],
        "grad_x": train_x[: cfg.grad_images], "grad_y": train_y[: cfg.grad_images],
        "num_classes": len(splits.classes), "mean": float(splits.mean), "std": float(splits.std),
    }
    timing: dict[str, float] = {}
    result: dict = {"config": OmegaConf.to_container(OmegaConf.structured(cfg)), "n_train": n_train, "n_eval": n_eval}
    models = {"trained": model}
    if cfg.control and control is not None:
        models["random_init"] = control.to(device).eval()
    if cfg.dissection:
        data["concepts"], data["dissect_x"] = _concepts(splits, n_eval, cfg)
    feats, input_probe, dissection_units = {}, None, {}
    for tag, m in models.items():
        if not all(torch.isfinite(p).all() for p in m.parameters()):
            result[tag] = None
            result[f"{tag}_skipped"] = "non-finite weights (diverged run)"
            continue
        block, feats[tag] = _analyze_one(m, data, cfg, input_probe, timing, tag)
        input_probe = {"train_acc": block["probe_train_acc"][0], "eval_acc": block["probe_eval_acc"][0]}
        if "probe_shuffled_eval_acc" in block:
            input_probe["shuffled"] = {"eval_acc": block["probe_shuffled_eval_acc"][0],
                                       "eval_acc_sd": block["probe_shuffled_eval_acc_sd"][0]}
        dissection_units[tag] = block.pop("_dissection", None)
        result[tag] = block
        result["layers"] = list(feats[tag].names)
    if "layers" not in result:
        result["layers"] = [INPUT] + model.hidden_layers() + [LOGITS]
    if any(dissection_units.values()):
        concepts = data["concepts"]
        result["dissection"] = {
            "concepts": concepts.names(), "levels": concepts.levels().tolist(), "images": len(data["dissect_x"]),
            "config": {"quantile": cfg.dissect_quantile, "iou_threshold": cfg.dissect_iou,
                       "grad_images": cfg.dissect_grad_images, "quantile_images": cfg.dissect_quantile_images},
            **{tag: units for tag, units in dissection_units.items() if units},
        }
    result["position"] = layer_positions(result["layers"])
    if len(feats) == 2:
        # How far each layer moved from its initialization (1 = unchanged up to rotation/scale).
        paired = feats["trained"].paired(feats["random_init"])
        result["cka_trained_vs_init"] = [paired[k] for k in result["layers"]]
    timing["total"] = time.perf_counter() - start
    result["timing_s"] = timing
    return json_safe(result)


def random_init_control(model_cfg, seed: int) -> nn.Module:
    """The exact initial network of a run: training seeds torch with the run seed, then builds the model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model_from_config(model_cfg).eval()


def analyze_run(run_dir: str | os.PathLike, cfg=None, write: bool = True) -> dict:
    """Analyse a run folder (trained model + its random-init control); writes ``<run>/analysis.json``."""
    cfg = as_analysis_config(cfg)
    run = load_run(run_dir, device=cfg.device)
    control = random_init_control(run.cfg.model, int(run.cfg.seed)) if cfg.control else None
    result = analyze_model(run.model, run.splits(), cfg, control=control)
    final = read_final(run.run_dir) or {}
    result["run"] = json_safe({
        "run_dir": str(Path(run.run_dir).resolve()),
        "status": final.get("status"),
        "test_acc": final.get("test_acc"),
        "seed": int(run.cfg.seed),
        "model": OmegaConf.to_container(run.cfg.model, resolve=True),
        "data": str(run.cfg.data.name),
    })
    if write:
        atomic_write_json(Path(run.run_dir) / ANALYSIS_NAME, result, indent=1, allow_nan=False)
    return result


def load_analysis(run_dir: str | os.PathLike) -> dict:
    """Read ``<run>/analysis.json``; ReplearnError if absent."""
    analysis = read_analysis(run_dir)
    if analysis is None:
        raise ReplearnError(f"no readable {ANALYSIS} in {run_dir}; run the analysis first (replearn.analysis.analyze_run)")
    return analysis
