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
    settings = DissectionSettings(quantile=cfg.dissect_quantile, iou_threshold=cfg.dissect_iou,
                                  grad_images=cfg.dissect_grad_images, quantile_images=cfg.dissect_quantile_images)
    return dissect_model(model, data["dissect_x"], data["concepts"], normalize=data["normalize"],
                         std=data["std"], settings=settings)


DISSECT_KEYS = ("dissect_fraction_l1", "dissect_fraction_l2", "dissect_fraction_l3", "dissect_fraction_unlabelled",
                "dissect_mean_best_iou_l1", "dissect_mean_best_iou_l2", "dissect_mean_best_iou_l3", "dissect_method")


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
        fractions, best = d.level_fractions(), d.mean_best_iou()
        for level in ("l1", "l2", "l3", "unlabelled"):
            block[f"dissect_fraction_{level}"].append(fractions[level])
        for level in ("l1", "l2", "l3"):
            block[f"dissect_mean_best_iou_{level}"].append(best[level])
        block["dissect_method"].append(d.method)
        summaries[module_name(key)] = d.summary()
    block["_dissection"] = summaries
