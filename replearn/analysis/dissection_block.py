"""The dissection part of an analysis block: per-layer level fractions and IoU summaries, per-unit labels."""

from __future__ import annotations

from replearn.analysis.features import INPUT, LOGITS
from replearn.conf.analysis import AnalysisConfig
from replearn.dissection import DissectionSettings, dissect_model


def module_name(key: str) -> str:
    """The module a layer key names: ``logits`` is the ``head``."""
    return "head" if key == LOGITS else key


def dissect(model, data: dict, cfg: AnalysisConfig) -> dict:
    """{layer: LayerDissection} for every hidden block and the head, or {} when dissection is off."""
    if not cfg.dissection or data.get("concepts") is None:
        return {}
    return dissect_model(model, data["dissect_x"], data["concepts"], normalize=data["normalize"],
                         std=data["std"], settings=dissection_settings(cfg), labels=data.get("dissect_y"))


def dissection_settings(cfg: AnalysisConfig) -> DissectionSettings:
    """The dissection's settings from the ``analysis`` node (its ``dissect_*`` keys)."""
    return DissectionSettings(quantile=cfg.dissect_quantile, iou_threshold=cfg.dissect_iou,
                              grad_images=cfg.dissect_grad_images, quantile_images=cfg.dissect_quantile_images,
                              null_permutations=cfg.dissect_null_permutations, null_quantile=cfg.dissect_null_quantile,
                              ceiling_images=cfg.dissect_ceiling_images, seed=cfg.seed)


LEVELS = ("l1", "l2", "l3")
# Per layer: the labels (after the ink baseline and the within-class null), the labels before the null, the
# threshold-free mean best IoU and mean best IoU / ceiling per level, and the map method.
DISSECT_KEYS = (*(f"dissect_fraction_{lv}" for lv in (*LEVELS, "unlabelled")),
                *(f"dissect_fraction_before_null_{lv}" for lv in LEVELS),
                *(f"dissect_mean_best_iou_{lv}" for lv in LEVELS),
                *(f"dissect_iou_vs_ceiling_{lv}" for lv in LEVELS), "dissect_method")


def fill_dissection(block: dict, keys: list[str], dissection: dict) -> None:
    """Per-layer lists of the dissection summaries (None where n/a) and the per-unit labels under ``_dissection``."""
    nan = float("nan")
    if not dissection:
        return
    for key in DISSECT_KEYS:
        block[key] = []
    summaries = {}
    for key in keys:
        d = dissection.get(module_name(key)) if key != INPUT else None
        if d is None:
            for k in DISSECT_KEYS:
                block[k].append(None if k == "dissect_method" else nan)
            continue
        fractions, before = d.level_fractions(), d.level_fractions(before_null=True)
        best, vs_ceiling = d.mean_best_iou(), d.mean_best_iou_vs_ceiling()
        for level in (*LEVELS, "unlabelled"):
            block[f"dissect_fraction_{level}"].append(fractions[level])
        for level in LEVELS:
            block[f"dissect_fraction_before_null_{level}"].append(before[level])
            # The logits are labelled by their class, not measured: no IoU summary counts them.
            block[f"dissect_mean_best_iou_{level}"].append(best[level] if d.is_measured else nan)
            block[f"dissect_iou_vs_ceiling_{level}"].append(vs_ceiling[level])
        block["dissect_method"].append(d.method)
        summaries[module_name(key)] = d.summary()
    block["_dissection"] = summaries
