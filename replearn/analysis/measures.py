"""Every per-layer measure of one model (probes, CKA, trainability, complexity, dissection) for analysis.json.

:func:`measure_model` fills one block of ``analysis.json`` (trained, random_init or shuffled_labels): per-layer
lists aligned with the layer keys (``input``, hidden blocks, ``logits``).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from replearn.analysis.cka import CentredLayers, MinibatchCKA
from replearn.analysis.complexity import actmax_centroid, class_selectivity, effective_receptive_field, nanmean
from replearn.analysis.concept_probes import concept_probe_layers
from replearn.analysis.dissection_block import dissect, fill_dissection
from replearn.analysis.features import INPUT, LOGITS, extract_features
from replearn.analysis.probes import probe_layers, shuffled_ridge_probe
from replearn.analysis.trainability import dead_unit_fraction, gradient_norms, layer_weights
from replearn.conf.analysis import AnalysisConfig
from replearn.device import single_thread
from replearn.errors import ReplearnError
from replearn.recording.hooks import capture_activations


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


def measure_model(model, data: dict, cfg: AnalysisConfig, input_probe: dict | None, timing: dict, tag: str) -> tuple[dict, dict]:
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
    dissection = dissect(model, data, cfg)
    timing[f"{tag}_dissection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    concept_probes = _concept_probes(f_eval, data, cfg)
    timing[f"{tag}_concept_probes"] = time.perf_counter() - t0

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
    _fill_floor(block, keys, shuffled)
    fill_dissection(block, keys, dissection)
    if concept_probes:
        for level in ("l1", "l2"):
            block[f"concept_probe_{level}"] = [concept_probes[k][level] for k in keys]
    return block, centred


def _concept_probes(f_eval: dict, data: dict, cfg: AnalysisConfig) -> dict:
    """{layer: within-class concept probe summary} on the dissection's probe images, or {} without masks.

    The dissection images are the first evaluation images, so their features are the first rows of ``f_eval``.
    """
    targets = data.get("concept_targets")
    if not cfg.concept_probes or targets is None:
        return {}
    n = len(targets)
    with single_thread():
        return concept_probe_layers({k: v[:n] for k, v in f_eval.items()}, targets, data["eval_y"][:n], seed=cfg.seed)


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

def _fill_floor(block: dict, keys: list[str], shuffled: dict) -> None:
    """Per-layer lists of the shuffled-label probe floor."""
    if shuffled:
        block["probe_shuffled_eval_acc"] = [shuffled[k]["eval_acc"] for k in keys]
        block["probe_shuffled_eval_acc_sd"] = [shuffled[k]["eval_acc_sd"] for k in keys]
