"""Per-run analysis: probes, CKA, trainability and pattern complexity -> ``analysis.json``.

Everything is measured for the trained model and for two controls of the same
architecture: its random-init network (same seed as the run, so the control is
exactly the network the run started from: training seeds before building the
model), and a twin trained on shuffled labels with the same budget.
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

from replearn.analysis.concept_probes import part_targets
from replearn.analysis.controls import load_shuffled_control, train_shuffled_control
from replearn.analysis.features import INPUT, LOGITS, layer_positions
from replearn.analysis.measures import measure_model
from replearn.conf.analysis import AnalysisConfig, validate_analysis
from replearn.dissection.concept_cache import concepts_for
from replearn.errors import ReplearnError
from replearn.models import build_model_from_config
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


def _concepts(splits, n_eval: int, cfg: AnalysisConfig):
    """Concept masks of the first ``dissect_images`` evaluation images (``concepts_for``: the generator's for
    data=shapes, else morphology, cached per user)."""
    n = min(cfg.dissect_images, n_eval)
    return concepts_for(splits, n), splits.test_x[:n].cpu()


def analyze_model(model: nn.Module, splits, cfg=None, control: nn.Module | None = None,
                  shuffled: nn.Module | None = None) -> dict:
    """Analyse ``model`` on ``splits`` (a :class:`replearn.data.Splits`) beside its controls.

    ``control`` is its random-init twin (block ``random_init``), ``shuffled`` the same architecture trained
    on shuffled labels with the same budget (block ``shuffled_labels``); each is measured exactly as the
    trained model.

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
    if cfg.shuffled_control and shuffled is not None:
        models["shuffled_labels"] = shuffled.to(device).eval()
    if cfg.dissection or cfg.concept_probes:
        data["concepts"], data["dissect_x"] = _concepts(splits, n_eval, cfg)
        data["dissect_y"] = data["eval_y"][: len(data["dissect_x"])]
        if cfg.concept_probes:
            data["concept_targets"] = part_targets(data["concepts"])
    feats, input_probe, dissection_units = {}, None, {}
    for tag, m in models.items():
        if not all(torch.isfinite(p).all() for p in m.parameters()):
            result[tag] = None
            result[f"{tag}_skipped"] = "non-finite weights (diverged run)"
            continue
        block, feats[tag] = measure_model(m, data, cfg, input_probe, timing, tag)
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
                       "grad_images": cfg.dissect_grad_images, "quantile_images": cfg.dissect_quantile_images,
                       "null_permutations": cfg.dissect_null_permutations, "null_quantile": cfg.dissect_null_quantile,
                       "ceiling_images": cfg.dissect_ceiling_images},
            **{tag: units for tag, units in dissection_units.items() if units},
        }
    result["position"] = layer_positions(result["layers"])
    if "trained" in feats and "random_init" in feats:
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
    """Analyse a run folder beside its controls; writes ``<run>/analysis.json``.

    The controls are the run's random-init network and (``analysis.shuffled_control``) its shuffled-label
    twin, trained on first use into the run folder (:mod:`replearn.analysis.controls`) and reused after.
    """
    cfg = as_analysis_config(cfg)
    run = load_run(run_dir, device=cfg.device)
    control = random_init_control(run.cfg.model, int(run.cfg.seed)) if cfg.control else None
    shuffled = None
    if cfg.shuffled_control:
        train_shuffled_control(run.run_dir)
        shuffled = load_shuffled_control(run.run_dir, device=cfg.device)
    result = analyze_model(run.model, run.splits(), cfg, control=control, shuffled=shuffled)
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
