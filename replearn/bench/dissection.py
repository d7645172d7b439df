"""Dissection benchmark: concept masks for 10k images, then every layer of a depth-8 CNN and a depth-5 MLP.

Targets (2 CPU cores): building the masks for 10,000 images <= 60 s (once; then a cache
read), dissecting every layer of a depth-8 CNN over 10,000 probe images <= 20 s. The
networks are freshly initialized: dissection cost depends on the weights only through how
many (image, unit) maps reach their threshold, which is of the same order trained or not.

The null's cost, on one torch thread: recording every layer of the depth-8 CNN (its maps), dissecting
them without the within-class null and with it (medians of ``repeats``); targets: with the null <= 1.5x
without, and <= 2x the recording. The null's share grows with the units labelled before it (it tests
only those), so a trained network may cost more than this random-init one. Numbering the probe set's
concept patterns (:mod:`replearn.dissection.patterns`) is done once per probe set, for every network
dissected on it, and timed on its own.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch
from omegaconf import OmegaConf

from replearn.bench.machine import matmul_gflops
from replearn.data import load_splits
from replearn.device import resolve_threads, single_thread
from replearn.dissection import DissectionSettings, MapSource, dissect_layers, dissect_model
from replearn.dissection.concept_cache import load_concept_masks
from replearn.dissection.patterns import concept_patterns
from replearn.models import build_model

MASK_TARGET_SECONDS = 60.0
CNN_TARGET_SECONDS = 20.0
NULL_TARGET_RATIO = 1.5
RECORD_TARGET_RATIO = 2.0


def null_cost(images, masks, normalize, std: float, repeats: int = 3, seed: int = 0) -> dict:
    """Seconds (medians of ``repeats``, one torch thread) to record every layer of a random-init depth-8 CNN
    and to dissect them without and with the null, and their ratios."""
    torch.manual_seed(seed)
    model = build_model("cnn", depth=8).eval()
    times: dict[str, list[float]] = {"record": [], "no_null": [], "null": []}
    with single_thread():
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            source = MapSource(model, model.layer_names(), images, normalize, std)
            times["record"].append(time.perf_counter() - start)
            for key, perms in (("no_null", 0), ("null", DissectionSettings().null_permutations)):
                start = time.perf_counter()
                dissect_layers(source, masks, DissectionSettings(null_permutations=perms))
                times[key].append(time.perf_counter() - start)
    med = {key: statistics.median(values) for key, values in times.items()}
    return {
        "null_cost_setup": f"CNN(depth=8) random init, all {len(model.layer_names())} layers, {len(images)} images, "
                           f"1 torch thread, median of {max(1, repeats)}",
        "record_layers_seconds": round(med["record"], 2),
        "dissect_no_null_seconds": round(med["no_null"], 2),
        "dissect_with_null_seconds": round(med["null"], 2),
        "dissect_with_null_over_record": round(med["null"] / med["record"], 2),
        "dissect_with_null_over_record_target": RECORD_TARGET_RATIO,
        "null_over_no_null": round(med["null"] / med["no_null"], 3),
        "null_over_no_null_target": NULL_TARGET_RATIO,
    }


def run(cfg) -> dict:
    """Time mask building (uncached and cached) and the dissection of a depth-8 CNN and a depth-5 MLP."""
    cfg = OmegaConf.create(cfg if cfg is not None else {})
    trainer = cfg.get("trainer") or {}
    # The same thread rule as a run: trainer.threads=N, or 0 = the cores other processes leave free.
    threads = resolve_threads(int(trainer.get("threads", 0)))
    n = int(cfg.get("probe_images", 10000))
    splits = load_splits(cfg.data)
    images, labels = splits.test_x[:n].cpu(), splits.test_y[:n].cpu()
    classes = list(splits.classes)
    out: dict = {"probe_images": len(images), "threads": threads.describe(),
                 "gflops_matmul_now": round(matmul_gflops(), 1)}

    start = time.perf_counter()
    masks = load_concept_masks(images, labels, classes, use_cache=False)
    out["concept_masks_seconds"] = round(time.perf_counter() - start, 2)
    with single_thread():
        start = time.perf_counter()
        concept_patterns(masks.masks)  # remembered for this mask tensor: every dissection below reuses it
        out["concept_patterns_seconds"] = round(time.perf_counter() - start, 2)
    out["concept_masks_target_seconds"] = MASK_TARGET_SECONDS
    previous = os.environ.get("REPLEARN_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["REPLEARN_CACHE_DIR"] = cache
        try:
            load_concept_masks(images, labels, classes)  # builds and stores
            start = time.perf_counter()
            load_concept_masks(images, labels, classes)
            out["concept_masks_cached_seconds"] = round(time.perf_counter() - start, 3)
        finally:
            if previous is None:
                os.environ.pop("REPLEARN_CACHE_DIR", None)
            else:
                os.environ["REPLEARN_CACHE_DIR"] = previous

    settings = DissectionSettings()
    torch.manual_seed(int(cfg.get("seed", 0)))
    for name, model in (("cnn_d8", build_model("cnn", depth=8)), ("mlp_d5", build_model("mlp", depth=5))):
        model.eval()
        start = time.perf_counter()
        result = dissect_model(model, images, masks, normalize=splits.normalize, std=float(splits.std), settings=settings)
        out[f"dissection_{name}_seconds"] = round(time.perf_counter() - start, 2)
        out[f"dissection_{name}_units"] = sum(len(d.best_iou) for d in result.values())
    out["dissection_cnn_d8_target_seconds"] = CNN_TARGET_SECONDS
    out["meets_targets"] = (out["concept_masks_seconds"] <= MASK_TARGET_SECONDS
                            and out["dissection_cnn_d8_seconds"] <= CNN_TARGET_SECONDS)
    out["dissection_mlp_grad_images"] = settings.grad_images
    out.update(null_cost(images, masks, splits.normalize, float(splits.std), int(cfg.get("repeats", 3)),
                         int(cfg.get("seed", 0))))
    out["meets_targets"] = (out["meets_targets"] and out["null_over_no_null"] <= NULL_TARGET_RATIO
                            and out["dissect_with_null_over_record"] <= RECORD_TARGET_RATIO)
    return out
