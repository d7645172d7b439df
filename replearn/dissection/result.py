"""One layer's dissection result: IoUs, the references they are read against, labels and their summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from replearn.dissection.registration import Geometry

LEVEL_NAMES = {1: "edges & strokes", 2: "parts & shapes", 3: "objects (digits)"}
LEVEL_KEYS = tuple(f"l{lv}" for lv in LEVEL_NAMES)


def _rounded(values) -> list:
    return [round(float(v), 5) for v in values]


def choose_concepts(iou: torch.Tensor, iou_threshold: float, ceiling: torch.Tensor | None = None,
                    ink_baseline: torch.Tensor | None = None) -> torch.Tensor:
    """(U,) each unit's best concept: among the concepts whose IoU beats ``iou_threshold`` and the ink
    baseline, the one it detects closest to a perfect detector at its geometry (highest IoU / ceiling,
    capped at 1; ties go to the higher IoU); for a unit with no such concept, its highest IoU.

    Normalising by the ceiling matters only on coarse grids: there a perfect detector of a thin
    concept reaches a far lower IoU than one of a whole digit (at 4x4, 0.06 for ``edge_left`` but 0.27
    for ``digit_1``), so raw IoU would hand every coarse unit to the large concepts. The cap: a ceiling
    is what the pooled mask scores, not an upper bound (at 4x4 a perfect ``digit_1`` detector scores
    0.08 with ``edge_right``, whose ceiling is 0.07), and reaching it twice is decided by the IoU.
    """
    eligible = iou > iou_threshold
    if ink_baseline is not None:
        eligible &= iou > ink_baseline[None, :].to(iou.dtype)
    ratio = iou
    if ceiling is not None:
        ceiling = ceiling[None, :].to(iou.dtype)
        ratio = torch.where(ceiling > 0, iou / ceiling.clamp(min=1e-12), iou).clamp(max=1.0)
    ratio = torch.where(eligible, ratio, -math.inf)
    closest = ratio == ratio.max(1, keepdim=True).values  # ties (several concepts at the cap): highest IoU
    chosen = torch.where(eligible & closest, iou, -math.inf).argmax(1)
    return torch.where(eligible.any(1), chosen, iou.argmax(1))


@dataclass
class LayerDissection:
    """One layer's result: ``iou`` (U, K), per-unit best concept, the references and the labels.

    A unit's best concept c is chosen by :func:`choose_concepts`; the unit is labelled with it when its
    IoU exceeds ``iou_threshold``, the smeared-ink baseline ``ink_baseline[c]`` and (when the null ran)
    ``null_iou`` - the null quantile of its IoU with c under within-class mask permutations.

    ``method == "class"`` (the logits): unit c is labelled with class c's level-3 concept
    (``assigned[c]``; -1: none) by construction. That is not a measurement, so its IoUs, ceilings and
    level fractions are NaN and no summary over layers counts it as evidence.
    """

    layer: str
    method: str
    iou: torch.Tensor  # (U, K) float64
    thresholds: torch.Tensor  # (U,)
    concept_names: list[str]
    concept_levels: torch.Tensor  # (K,) int64
    iou_threshold: float
    images: int
    # (images, U) each unit's peak (native map) on each probe image: finds its strongest images
    # without computing the maps again (replearn.dissection.examples). The logits for method "class".
    peaks: torch.Tensor | None = None
    ceiling: torch.Tensor | None = None  # (K,) a perfect detector's IoU at this layer's geometry
    ink_baseline: torch.Tensor | None = None  # (K,) the smeared-ink detector's IoU
    # (U,) null quantile of the best concept's IoU; NaN for units the threshold and ink baseline already leave
    # unlabelled (the null cannot change their label); None: no null
    null_iou: torch.Tensor | None = None
    geometry: Geometry | None = None
    assigned: torch.Tensor | None = None  # (U,) method "class": each logit's concept, -1 for none
    best_iou: torch.Tensor = field(init=False)  # (U,)
    best_concept: torch.Tensor = field(init=False)  # (U,) index into concepts

    def __post_init__(self):
        if self.method == "class":
            if self.assigned is None:  # logit c is the c-th level-3 concept
                level3 = (self.concept_levels == 3).nonzero().flatten()
                self.assigned = torch.full((self.iou.shape[0],), -1, dtype=torch.int64)
                self.assigned[: len(level3)] = level3[: self.iou.shape[0]]
            self.best_concept = self.assigned.clamp(min=0)
            self.best_iou = torch.full((self.iou.shape[0],), math.nan, dtype=torch.float64)
        else:
            self.best_concept = choose_concepts(self.iou, self.iou_threshold, self.ceiling, self.ink_baseline)
            self.best_iou = self.iou.gather(1, self.best_concept[:, None])[:, 0]

    def to_payload(self) -> dict:
        """The fields as tensors and plain values (for the per-user cache, which loads with ``weights_only``)."""
        def cpu(t):
            return None if t is None else t.detach().cpu()

        return {"layer": self.layer, "method": self.method, "iou": cpu(self.iou), "thresholds": cpu(self.thresholds),
                "concept_names": list(self.concept_names), "concept_levels": cpu(self.concept_levels),
                "iou_threshold": float(self.iou_threshold), "images": int(self.images), "peaks": cpu(self.peaks),
                "ceiling": cpu(self.ceiling), "ink_baseline": cpu(self.ink_baseline), "null_iou": cpu(self.null_iou),
                "geometry": self.geometry.as_dict() if self.geometry is not None else None,
                "assigned": cpu(self.assigned)}

    @classmethod
    def from_payload(cls, payload: dict) -> LayerDissection:
        """The result :meth:`to_payload` wrote (best concepts are chosen again, as on construction)."""
        fields = dict(payload)
        geometry = fields.pop("geometry")
        if geometry is not None:
            geometry = Geometry(tuple(int(c) for c in geometry["cells"]), float(geometry["centre"]),
                                float(geometry["step"]))
        return cls(**fields, geometry=geometry)

    @property
    def is_measured(self) -> bool:
        """False for the logits (labelled by their class, not measured)."""
        return self.method != "class"

    @property
    def labelled_before_null(self) -> torch.Tensor:
        """(U,) bool: best IoU above the threshold and above the ink baseline of its concept."""
        if not self.is_measured:
            return self.assigned >= 0
        ok = self.best_iou > self.iou_threshold
        if self.ink_baseline is not None:
            ok &= self.best_iou > self.ink_baseline[self.best_concept]
        return ok

    @property
    def labelled(self) -> torch.Tensor:
        """(U,) bool: labelled before the null and, when the null ran, above its quantile too."""
        ok = self.labelled_before_null
        if self.is_measured and self.null_iou is not None:
            ok = ok & (self.best_iou > self.null_iou)
        return ok

    def unit_labels(self, before_null: bool = False) -> list[str | None]:
        """Per unit: its concept name when labelled, else None."""
        labelled = self.labelled_before_null if before_null else self.labelled
        return [self.concept_names[int(c)] if ok else None for c, ok in zip(self.best_concept, labelled)]

    def level_fractions(self, before_null: bool = False) -> dict[str, float]:
        """Fraction of units labelled at each level (keys l1, l2, l3) and unlabelled; NaN for the logits."""
        if not self.is_measured:
            return {key: math.nan for key in (*LEVEL_KEYS, "unlabelled")}
        labelled = self.labelled_before_null if before_null else self.labelled
        n = len(self.best_iou)
        unit_level = self.concept_levels[self.best_concept]
        out = {f"l{lv}": float(((unit_level == lv) & labelled).sum()) / n for lv in LEVEL_NAMES}
        out["unlabelled"] = float((~labelled).sum()) / n
        return out

    def mean_best_iou(self) -> dict[str, float]:
        """Per level: mean over units of the best IoU among that level's concepts (threshold-free)."""
        out = {}
        for lv in LEVEL_NAMES:
            cols = self.concept_levels == lv
            out[f"l{lv}"] = float(self.iou[:, cols].max(1).values.mean()) if cols.any() else math.nan
        return out

    def _vs_ceiling(self) -> torch.Tensor:
        """(U, K) IoU / ceiling; NaN where the ceiling is unknown or 0."""
        if self.ceiling is None:
            return torch.full_like(self.iou, math.nan)
        ceiling = self.ceiling[None, :].to(self.iou.dtype)
        return torch.where(ceiling > 0, self.iou / ceiling.clamp(min=1e-12), math.nan)

    def best_iou_vs_ceiling(self) -> torch.Tensor:
        """(U,) each unit's best IoU over its best concept's ceiling (NaN without a ceiling)."""
        return self._vs_ceiling().gather(1, self.best_concept[:, None])[:, 0]

    def mean_best_iou_vs_ceiling(self) -> dict[str, float]:
        """Per level: mean over units of the best IoU / ceiling among that level's concepts (threshold-free)."""
        ratio, out = self._vs_ceiling(), {}
        for lv in LEVEL_NAMES:
            cols = ratio[:, self.concept_levels == lv]  # (U, K_lv)
            known = ~cols.isnan()
            if not self.is_measured or not known.any():
                out[f"l{lv}"] = math.nan
                continue
            best = torch.where(known, cols, -math.inf).max(1).values
            out[f"l{lv}"] = float(best[known.any(1)].mean())
        return out

    def top_units(self, count: int = 5) -> dict[str, list[list]]:
        """Per concept: up to ``count`` labelled units whose best concept it is, as [unit, iou], best first
        (empty for the logits: nothing was measured)."""
        out = {}
        labelled = self.labelled if self.is_measured else torch.zeros(len(self.best_iou), dtype=torch.bool)
        for k, name in enumerate(self.concept_names):
            units = ((self.best_concept == k) & labelled).nonzero().flatten()
            if len(units):
                order = self.best_iou[units].argsort(descending=True)[:count]
                out[name] = [[int(units[i]), round(float(self.best_iou[units[i]]), 5)] for i in order]
        return out

    def summary(self, top: int = 5) -> dict:
        """JSON-ready dict: per-unit labels and IoUs (with and without the null), references, level summaries."""
        nan_k = [math.nan] * len(self.concept_names)
        return {
            "method": self.method, "images": self.images,
            "geometry": self.geometry.as_dict() if self.geometry is not None else None,
            "best_concept": self.unit_labels(),
            "best_concept_before_null": self.unit_labels(before_null=True),
            "best_iou": _rounded(self.best_iou),
            "best_iou_vs_ceiling": _rounded(self.best_iou_vs_ceiling()),
            "null_iou": _rounded(self.null_iou) if self.null_iou is not None else None,
            "ceiling": _rounded(self.ceiling) if self.ceiling is not None else nan_k,
            "ink_baseline": _rounded(self.ink_baseline) if self.ink_baseline is not None else nan_k,
            "fractions": self.level_fractions(), "fractions_before_null": self.level_fractions(before_null=True),
            "mean_best_iou": self.mean_best_iou(), "mean_best_iou_vs_ceiling": self.mean_best_iou_vs_ceiling(),
            "top_units": self.top_units(top),
        }
