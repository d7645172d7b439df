"""Synthetic analysis.json dicts and sweep folders with known trends, for the depth-report tests.

A profile is a function (relative position, seed) -> value; ``fake_analysis``
evaluates it at every layer of a depth-``depth`` MLP, trained and control.
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


def hierarchy(pos):
    """Level fractions (l1, l2, l3) of an ideal edges -> parts -> digits network at relative position ``pos``."""
    l1 = max(0.0, 0.6 * (1 - 2 * pos))
    l2 = max(0.0, 0.5 * (1 - abs(pos - 0.5) * 3))
    l3 = max(0.0, 0.8 * (2 * pos - 1))
    return l1, l2, l3


def reversed_hierarchy(pos):
    return hierarchy(1 - pos)


def _levels_block(levels, depth, seed, layers, position, units):
    block = {f"dissect_fraction_l{k}": [] for k in (1, 2, 3)}
    block["dissect_fraction_unlabelled"] = []
    for k in (1, 2, 3):
        block[f"dissect_mean_best_iou_l{k}"] = []
    block["dissect_method"] = []
    per_unit = {}
    for i, (name, pos) in enumerate(zip(layers, position)):
        if name == "input":
            for key in block:
                block[key].append(None)
            continue
        fracs = levels(pos)
        counts = [round(f * units) for f in fracs]
        best = ([CONCEPTS[0]] * counts[0] + [CONCEPTS[4]] * counts[1] + [CONCEPTS[10]] * counts[2])[:units]
        best += [None] * (units - len(best))
        for k in (1, 2, 3):
            block[f"dissect_fraction_l{k}"].append(best.count(CONCEPTS[[0, 4, 10][k - 1]]) / units)
            block[f"dissect_mean_best_iou_l{k}"].append(0.05 + 0.1 * fracs[k - 1] + noise(seed, depth, i, 0.005))
        block["dissect_fraction_unlabelled"].append(best.count(None) / units)
        block["dissect_method"].append("grad_x_input")
        per_unit[name] = {"best_concept": best, "best_iou": [0.1 if b else 0.01 for b in best],
                          "top_units": {CONCEPTS[0]: [[0, 0.1]]}}
    return block, per_unit


def fake_analysis(depth: int, seed: int, trained: dict | None = None, control: dict | None = None,
                  levels=hierarchy, control_levels=None, units: int = 20, shuffled: float = 0.1,
                  control_noise: int = 1000) -> dict:
    """An analysis.json dict for a depth-``depth`` MLP with the given per-metric profiles.

    The control's profiles draw their noise with seed + ``control_noise`` (0: the same noise as trained, so an
    identical profile gives identical values).
    """
    trained = {"probe_eval_acc": rising(), "class_selectivity": rising(0.1, 0.5), "erf_area": rising(0.6, 0.8),
               **(trained or {})}
    control = {"probe_eval_acc": flat(0.4), "class_selectivity": flat(0.1), "erf_area": rising(0.6, 0.8),
               **(control or {})}
    layers = ["input"] + [f"blocks.{i}" for i in range(depth)] + ["logits"]
    position = [i / (depth + 1) for i in range(depth + 2)]
    result = {"layers": layers, "position": position, "n_eval": 100}
    control_levels = control_levels or (lambda p: (0.0, 0.0, 0.0))
    for name, profiles, lv in (("trained", trained, levels), ("random_init", control, control_levels)):
        block = {}
        salt = 0 if name == "trained" else control_noise
        for key, f in profiles.items():
            block[key] = [f(pos, seed + salt, depth, i) for i, pos in enumerate(position)]
            if key != "probe_eval_acc":
                block[key][0] = None  # these measures do not apply to the input pixels
        # The input pixels are the same in both networks.
        block["probe_eval_acc"][0] = 0.85
        block["probe_shuffled_eval_acc"] = [shuffled + noise(seed, depth, i + 50, 0.005) for i in range(len(layers))]
        block["probe_shuffled_eval_acc_sd"] = [0.01] * len(layers)
        levels_block, per_unit = _levels_block(lv, depth, seed, layers, position, units)
        block.update(levels_block)
        n = len(layers)
        block["cka"] = [[1.0 if a == b else max(0.0, 1 - abs(a - b) / n) for b in range(n)] for a in range(n)]
        result[name] = block
        result.setdefault("dissection", {"concepts": CONCEPTS, "levels": CONCEPT_LEVELS, "config": {}})[name] = per_unit
    return result


def write_fake_run(folder, depth: int, seed: int, variant: str = "plain", analysis: dict | None = None,
                   status: str = "ok", test_acc: float = 0.9, epochs: int = 2) -> None:
    """A run folder as train.py writes it: config.yaml, metrics.jsonl, final.json, analysis.json."""
    folder.mkdir(parents=True)
    model = {"name": "mlp", "depth": depth, "width": 8, "norm": "none", "residual": variant == "residual"}
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": model, "depth": depth, "seed": seed}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "val_acc": test_acc - 0.01 * (epochs - e), "train_acc": test_acc}) + "\n"
        for e in range(1, epochs + 1)))
    (folder / "final.json").write_text(json.dumps({"status": status, "test_acc": test_acc if status == "ok" else None,
                                                   "epochs_completed": epochs}))
    if analysis is not None:
        (folder / "analysis.json").write_text(json.dumps(analysis))
