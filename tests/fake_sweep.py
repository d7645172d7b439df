"""Synthetic analysis.json dicts and sweep folders with known trends, for the depth-report tests.

A profile is a function (relative position, seed, depth, layer index) -> value;
``fake_analysis`` evaluates it at every layer of a depth-``depth`` MLP, for the
trained network, its random-init control and its shuffled-label twin.
"""

from __future__ import annotations

import json
import random

import yaml

CONCEPTS = ["edge_0", "edge_45", "edge_90", "edge_135", "endpoint", "junction", "loop"] + [f"digit_{d}" for d in range(10)]
CONCEPT_LEVELS = [1, 1, 1, 1, 2, 2, 2] + [3] * 10


def noise(seed: int, depth: int, index: int, scale: float) -> float:
    return random.Random(seed * 100_003 + depth * 101 + index).gauss(0, scale)


def rising(lo=0.3, hi=0.9, sd=0.01):
    return lambda pos, seed, depth, i: lo + (hi - lo) * pos + noise(seed, depth, i, sd)


def falling(lo=0.3, hi=0.9, sd=0.01):
    return lambda pos, seed, depth, i: hi - (hi - lo) * pos + noise(seed, depth, i, sd)


def flat(value=0.5, sd=0.01):
    return lambda pos, seed, depth, i: value + noise(seed, depth, i, sd)


def peaked(lo=0.1, hi=0.5, sd=0.01):
    """Highest at relative position 0.5, ``lo`` at the ends: an interior peak."""
    return lambda pos, seed, depth, i: lo + (hi - lo) * max(0.0, 1 - 3 * abs(pos - 0.5)) + noise(seed, depth, i, sd)


def seed_offsets(base, offsets, sd=0.0):
    """``base`` plus a fixed offset per seed (offsets[seed]), the same at every layer."""
    return lambda pos, seed, depth, i: base + offsets[seed % 1000] + noise(seed, depth, i, sd)


def hierarchy(pos):
    """Level fractions (l1, l2, l3) of an ideal edges -> parts -> digits network at relative position ``pos``."""
    l1 = max(0.0, 0.6 * (1 - 2 * pos))
    l2 = max(0.0, 0.5 * (1 - abs(pos - 0.5) * 3))
    l3 = max(0.0, 0.8 * (2 * pos - 1))
    return l1, l2, l3


def reversed_hierarchy(pos):
    return hierarchy(1 - pos)


def _levels_block(levels, depth, seed, layers, position, units, legacy=False):
    keys = [f"dissect_fraction_l{k}" for k in (1, 2, 3)] + ["dissect_fraction_unlabelled"]
    keys += [f"dissect_mean_best_iou_l{k}" for k in (1, 2, 3)]
    if not legacy:
        keys += [f"dissect_fraction_before_null_l{k}" for k in (1, 2, 3)]
        keys += [f"dissect_iou_vs_ceiling_l{k}" for k in (1, 2, 3)]
    block = {key: [] for key in keys + ["dissect_method"]}
    per_unit = {}
    for i, (name, pos) in enumerate(zip(layers, position)):
        if name == "input" or (name == "logits" and not legacy):  # the head is labelled by its class, not measured
            for key in block:
                block[key].append(None)
            continue
        fracs = levels(pos)
        counts = [round(f * units) for f in fracs]
        best = ([CONCEPTS[0]] * counts[0] + [CONCEPTS[4]] * counts[1] + [CONCEPTS[10]] * counts[2])[:units]
        best += [None] * (units - len(best))
        for k in (1, 2, 3):
            fraction = best.count(CONCEPTS[[0, 4, 10][k - 1]]) / units
            block[f"dissect_fraction_l{k}"].append(fraction)
            block[f"dissect_mean_best_iou_l{k}"].append(0.05 + 0.1 * fracs[k - 1] + noise(seed, depth, i, 0.005))
            if not legacy:
                block[f"dissect_fraction_before_null_l{k}"].append(min(1.0, fraction + 0.1))
                block[f"dissect_iou_vs_ceiling_l{k}"].append(0.1 + 0.5 * fracs[k - 1] + noise(seed, depth, i + 7, 0.005))
        block["dissect_fraction_unlabelled"].append(best.count(None) / units)
        block["dissect_method"].append("grad_x_input")
        per_unit[name] = {"best_concept": best, "best_iou": [0.1 if b else 0.01 for b in best],
                          "top_units": {CONCEPTS[0]: [[0, 0.1]]}}
    return block, per_unit


def fake_analysis(depth: int, seed: int, trained: dict | None = None, control: dict | None = None,
                  levels=hierarchy, control_levels=None, units: int = 20, shuffled: float = 0.1,
                  control_noise: int = 1000, shuffled_labels: dict | None = None, shuffled_levels=None,
                  legacy: bool = False) -> dict:
    """An analysis.json dict for a depth-``depth`` MLP with the given per-metric profiles.

    The controls' profiles draw their noise with seed + ``control_noise`` (random init) and seed + 2 ×
    ``control_noise`` (shuffled labels); 0 gives the same noise as trained, so an identical profile gives identical
    values. ``legacy``: an analysis.json from before the shuffled-label network, the null-corrected fractions, the
    IoU ceilings and the concept probes (and with the head dissected).
    """
    trained = {"probe_eval_acc": rising(), "class_selectivity": rising(0.1, 0.5), "erf_area": rising(0.6, 0.8),
               **({} if legacy else {"concept_probe_l1": falling(0.1, 0.5), "concept_probe_l2": flat(0.2)}),
               **(trained or {})}
    control = {"probe_eval_acc": flat(0.4), "class_selectivity": flat(0.1), "erf_area": rising(0.6, 0.8),
               **({} if legacy else {"concept_probe_l1": flat(0.1), "concept_probe_l2": flat(0.1)}),
               **(control or {})}
    twin = {"probe_eval_acc": flat(0.5), "class_selectivity": flat(0.15), "erf_area": rising(0.6, 0.8),
            "concept_probe_l1": flat(0.1), "concept_probe_l2": flat(0.1), **(shuffled_labels or {})}
    layers = ["input"] + [f"blocks.{i}" for i in range(depth)] + ["logits"]
    position = [i / (depth + 1) for i in range(depth + 2)]
    result = {"layers": layers, "position": position, "n_eval": 100}
    control_levels = control_levels or (lambda p: (0.0, 0.0, 0.0))
    networks = [("trained", trained, levels, 0), ("random_init", control, control_levels, control_noise)]
    if not legacy:
        networks.append(("shuffled_labels", twin, shuffled_levels or control_levels, 2 * control_noise))
    for name, profiles, lv, salt in networks:
        levels_block, per_unit = _levels_block(lv, depth, seed, layers, position, units, legacy)
        block = dict(levels_block)  # a profile given for a dissection key replaces the one the levels imply
        for key, f in profiles.items():
            block[key] = [f(pos, seed + salt, depth, i) for i, pos in enumerate(position)]
            if key != "probe_eval_acc":
                block[key][0] = None  # these measures do not apply to the input pixels
            if key.startswith("dissect"):
                block[key][-1] = None  # nor is the head dissected
        # The input pixels are the same in every network.
        block["probe_eval_acc"][0] = 0.85
        block["probe_shuffled_eval_acc"] = [shuffled + noise(seed, depth, i + 50, 0.005) for i in range(len(layers))]
        block["probe_shuffled_eval_acc_sd"] = [0.01] * len(layers)
        n = len(layers)
        block["cka"] = [[1.0 if a == b else max(0.0, 1 - abs(a - b) / n) for b in range(n)] for a in range(n)]
        result[name] = block
        result.setdefault("dissection", {"concepts": CONCEPTS, "levels": CONCEPT_LEVELS, "config": {}})[name] = per_unit
    return result


def write_fake_run(folder, depth: int, seed: int, variant: str = "plain", analysis: dict | None = None,
                   status: str = "ok", test_acc: float = 0.9, epochs: int = 2, model_name: str = "mlp") -> None:
    """A run folder as train.py writes it: config.yaml, metrics.jsonl, final.json, analysis.json."""
    folder.mkdir(parents=True)
    model = {"name": model_name, "depth": depth, "width": 8, "norm": "none", "residual": variant == "residual"}
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": model, "depth": depth, "seed": seed}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "val_acc": test_acc - 0.01 * (epochs - e), "train_acc": test_acc}) + "\n"
        for e in range(1, epochs + 1)))
    (folder / "final.json").write_text(json.dumps({"status": status, "test_acc": test_acc if status == "ok" else None,
                                                   "epochs_completed": epochs}))
    if analysis is not None:
        (folder / "analysis.json").write_text(json.dumps(analysis))
