"""How recognizable class prototypes from activation maximization are, measured against real images.

For each class ``c`` and its prototype (the act-max image of logit ``c``):

- *recognized*: a reference classifier of another architecture (:mod:`replearn.actmax.reference`) predicts ``c``;
- *still a maximizer*: the model's own logit ``c`` as a percentile of that logit over real test images of ``c``;
- *looks like data*: the mean distance to the 5 nearest training images and the spectral centroid,
  each as a percentile of the same measure over real test images of ``c`` (inside the 5th-95th band);
- *not a copy*: the distance to the nearest training image as a percentile of the same for real test images
  (below the 1st percentile = closer to a training image than 99% of real digits are = a copy).

None of these measures is the density used by a prior, yet a data prior alone makes a random-init network's
prototypes pass most of them (clean digits of the wrong class). So a count means little on its own: the
trained model's score is its :func:`margins` over control networks run under the same prior
(:mod:`replearn.actmax.choice`), and :func:`rank_key` ranks priors by the margin over the random-init one.
Per-dataset statistics of real images are computed once and cached (:mod:`replearn.cache`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from replearn.actmax.spectrum import spectral_centroid
from replearn.cache import cached, content_key
from replearn.errors import ReplearnError
from replearn.recording.hooks import model_device

LOGIT_PERCENTILE = 99.0
BAND = (5.0, 95.0)
COPY_PERCENTILE = 1.0
STATS_VERSION = 1
# The per-class targets, in table order; "all" = every other one at once.
CRITERIA = ("recognized", "maximizer", "knn5_in_band", "centroid_in_band", "not_copy", "all")


def percentile_of(value: float, reference: torch.Tensor) -> float:
    """Percent of ``reference`` values at or below ``value`` (NaN for an empty reference or NaN value)."""
    reference = reference[~torch.isnan(reference)]
    if reference.numel() == 0 or math.isnan(float(value)):
        return float("nan")
    return 100.0 * float((reference <= value).double().mean())


def nearest_distances(images: torch.Tensor, train: torch.Tensor, k: int = 5, chunk: int = 8192) -> torch.Tensor:
    """Euclidean distances (N, k), ascending, from each of ``images`` to its ``k`` nearest ``train`` images.

    Both are pixel images in [0, 1] (N, C, H, W) / (M, C, H, W); ``train`` may be uint8 (divided by 255).
    """
    if images.shape[1:] != train.shape[1:]:
        raise ReplearnError(f"images {tuple(images.shape[1:])} and training images {tuple(train.shape[1:])} differ in shape")
    q = images.reshape(len(images), -1).float()
    q_sq = q.pow(2).sum(1, keepdim=True)
    best = torch.full((len(q), k), float("inf"))
    for start in range(0, len(train), chunk):
        t = train[start:start + chunk].reshape(-1, q.shape[1]).float()
        if train.dtype == torch.uint8:
            t = t / 255.0
        d2 = (q_sq - 2 * q @ t.T + t.pow(2).sum(1)[None]).clamp(min=0)  # (N, chunk)
        best = torch.cat([best, d2], 1).topk(k, dim=1, largest=False).values
    return best.sort(1).values.sqrt()


def real_statistics(splits, per_class: int = 300, k: int = 5, seed: int = 0, use_cache: bool = True) -> dict:
    """Per class: 5-NN mean distance, nearest distance and spectral centroid of up to ``per_class`` real test images.

    Returns ``{"knn": [(n_c,)...], "nearest": [...], "centroid": [...], "index": [...]}``, cached per dataset.
    """
    train, test, labels = splits.train_x.cpu(), splits.test_x.cpu(), splits.test_y.cpu()
    classes = int(max(int(labels.max()), int(splits.train_y.max()))) + 1
    stride = max(1, len(train) // 2000)
    key = content_key(splits.name, tuple(train.shape), train[::stride], tuple(test.shape), test[::5], labels,
                      per_class, k, seed, STATS_VERSION)

    def build() -> dict:
        gen = torch.Generator().manual_seed(seed)
        out: dict[str, list] = {"knn": [], "nearest": [], "centroid": [], "index": []}
        for c in range(classes):
            idx = (labels == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)[:per_class]].sort().values
            images = test[idx].float() / 255.0
            dist = nearest_distances(images, train, k=k) if len(idx) else torch.empty(0, k)
            out["knn"].append(dist.mean(1))
            out["nearest"].append(dist[:, 0])
            out["centroid"].append(spectral_centroid(images).float() if len(idx) else torch.empty(0))
            out["index"].append(idx)
        return {**out, "version": STATS_VERSION}

    def validate(payload: dict) -> None:
        if payload.get("version") != STATS_VERSION:
            raise ValueError("computed for other data or by another version")
        lists = [payload.get(name) for name in ("knn", "nearest", "centroid", "index")]
        if not all(isinstance(values, list) and len(values) == classes for values in lists):
            raise ValueError(f"knn, nearest, centroid and index must be lists of {classes} tensors")
        for c, (knn, nearest, centroid, index) in enumerate(zip(*lists)):
            measures = (knn, nearest, centroid)
            if not all(isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 1 for t in measures) \
                    or not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 1:
                raise ValueError(f"class {c}: not 1-D float measures and integer indices")
            # A blank image has no spectral centroid (NaN, left out of percentiles); nothing else may be NaN.
            if len({len(t) for t in (*measures, index)}) != 1 or not all(bool(torch.isfinite(t).all()) for t in (knn, nearest)) \
                    or bool(torch.isinf(centroid).any()):
                raise ValueError(f"class {c}: measures of different lengths or NaN/infinite values")
            if len(index) and not (int(index.min()) >= 0 and int(index.max()) < len(test)):
                raise ValueError(f"class {c}: image indices outside the test split")

    return cached("recognizability_stats", key, build, validate, use_cache=use_cache)


def _model_logits(model: nn.Module, pixels: torch.Tensor, mean: float, std: float, batch: int = 1000) -> torch.Tensor:
    """The model's logits (N, classes) for pixel images in [0, 1]."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(((pixels[i:i + batch].float() - mean) / std).to(device)).float().cpu()
                              for i in range(0, len(pixels), batch)])
    finally:
        model.train(was_training)


def score_prototypes(
    model: nn.Module,
    prototypes: torch.Tensor,
    splits,
    reference: nn.Module,
    stats: dict | None = None,
    classes: Sequence[int] | None = None,
    logits: torch.Tensor | None = None,
) -> dict:
    """Score class prototypes (C, 1, H, W) given as pixels in [0, 1], one per class in ``classes`` (default 0..C-1).

    Returns ``{"classes": [row per class], "summary": {...}}``; each row holds the raw measures, their
    percentiles among real test images of that class, and the pass/fail flags of the targets. ``logits``:
    :func:`test_logits` of ``model``, when already computed (scoring several priors reuses them).
    """
    if prototypes.dim() != 4:
        raise ReplearnError(f"prototypes must be (C, 1, H, W) pixel images, got shape {tuple(prototypes.shape)}")
    if float(prototypes.min()) < -1e-4 or float(prototypes.max()) > 1 + 1e-4:
        raise ReplearnError("prototypes must be pixels in [0, 1]; undo the normalization first: x * std + mean")
    pick = list(range(len(prototypes))) if classes is None else [int(c) for c in classes]
    if len(pick) != len(prototypes):
        raise ReplearnError(f"got {len(prototypes)} prototypes for {len(pick)} classes; pass one per class")
    stats = stats if stats is not None else real_statistics(splits)
    test, labels = splits.test_x.cpu(), splits.test_y.cpu()
    mean, std = float(splits.mean), float(splits.std)
    protos = prototypes.detach().cpu().float()
    own = _model_logits(model, protos, mean, std)
    with torch.no_grad():
        ref_prob = torch.softmax(reference(protos), 1)
    dist = nearest_distances(protos, splits.train_x.cpu(), k=5)
    centroid = spectral_centroid(protos).float()
    rows = []
    for i, c in enumerate(pick):
        real_logits = (logits[labels == c] if logits is not None
                       else _model_logits(model, test[labels == c].float() / 255.0, mean, std))[:, c]
        row = {
            "class": c,
            "reference_prediction": int(ref_prob[i].argmax()),
            "reference_confidence": float(ref_prob[i, c]),
            "logit": float(own[i, c]),
            "logit_percentile": percentile_of(float(own[i, c]), real_logits),
            "knn5_distance": float(dist[i].mean()),
            "knn5_percentile": percentile_of(float(dist[i].mean()), stats["knn"][c]),
            "spectral_centroid": float(centroid[i]),
            "centroid_percentile": percentile_of(float(centroid[i]), stats["centroid"][c]),
            "nearest_distance": float(dist[i, 0]),
            "nearest_percentile": percentile_of(float(dist[i, 0]), stats["nearest"][c]),
        }
        # A reference that outputs NaN (its argmax is then 0) recognizes nothing.
        row["recognized"] = bool(torch.isfinite(ref_prob[i]).all()) and row["reference_prediction"] == c
        row["maximizer"] = row["logit_percentile"] >= LOGIT_PERCENTILE
        row["knn5_in_band"] = BAND[0] <= row["knn5_percentile"] <= BAND[1]
        row["centroid_in_band"] = BAND[0] <= row["centroid_percentile"] <= BAND[1]
        row["not_copy"] = row["nearest_percentile"] >= COPY_PERCENTILE
        row["all"] = all(row[f] for f in ("recognized", "maximizer", "knn5_in_band", "centroid_in_band", "not_copy"))
        rows.append(row)
    return {"classes": rows, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    """Counts of classes meeting each target, the reference's mean confidence, and the median percentiles."""
    def median(key: str) -> float:
        values = torch.tensor([r[key] for r in rows], dtype=torch.float64)
        values = values[~torch.isnan(values)]
        return float(values.median()) if values.numel() else float("nan")

    return {
        "classes": len(rows),
        "recognized": sum(r["recognized"] for r in rows),
        "mean_confidence": sum(r["reference_confidence"] for r in rows) / max(1, len(rows)),
        "maximizer": sum(r["maximizer"] for r in rows),
        "knn5_in_band": sum(r["knn5_in_band"] for r in rows),
        "centroid_in_band": sum(r["centroid_in_band"] for r in rows),
        "not_copy": sum(r["not_copy"] for r in rows),
        "all": sum(r["all"] for r in rows),
        "median_logit_percentile": median("logit_percentile"),
        "median_knn5_percentile": median("knn5_percentile"),
        "median_centroid_percentile": median("centroid_percentile"),
        # How far from the middle of real images (percentile 50) the prototypes sit, on average over both
        # "looks like data" measures: 0 = as typical as can be, 50 = at the edge of the data.
        "typicality_gap": float(torch.tensor([(abs(r["knn5_percentile"] - 50) + abs(r["centroid_percentile"] - 50)) / 2
                                              for r in rows], dtype=torch.float64).nanmean()) if rows else float("nan"),
    }


def margins(summary: dict, controls: Mapping[str, dict]) -> dict:
    """Per criterion of :data:`CRITERIA`: the trained count minus the best control's count ({} without controls).

    ``summary`` and each of ``controls`` (control name -> summary) are :func:`summarize` outputs of the same
    classes under the same prior. A margin near 0 means the prior, not the model, made the prototypes pass.
    """
    if not controls:
        return {}
    return {c: int(summary[c]) - max(int(s[c]) for s in controls.values()) for c in CRITERIA}


def rank_key(summary: dict, control: dict | None = None) -> tuple:
    """Sort key for choosing a prior: classes meeting every target, then each target count, then typicality.

    With ``control`` (the random-init control's summary under the same prior) both counts are margins over
    it, so a prior that makes any network's prototypes pass does not win; typicality and the reference's
    confidence (of the trained prototypes) only break ties.
    """
    def count(key: str) -> int:
        return int(summary[key]) - (int(control[key]) if control is not None else 0)

    gap = summary["typicality_gap"]
    return (count("all"), sum(count(c) for c in CRITERIA if c != "all"), -gap if gap == gap else float("-inf"),
            summary["mean_confidence"])


def test_logits(model: nn.Module, splits) -> torch.Tensor:
    """The model's logits on every test image: (N, classes), on the CPU."""
    return _model_logits(model, splits.test_x.cpu().float() / 255.0, float(splits.mean), float(splits.std))


def class_logit_floor(model: nn.Module, splits, percentile: float = LOGIT_PERCENTILE,
                      logits: torch.Tensor | None = None) -> torch.Tensor:
    """Per class c, the ``percentile`` of the model's logit c over real test images of c: (classes,).

    The "still a maximizer" bar, usable as act-max's ``objective_floor`` for the head; ``logits``:
    :func:`test_logits` of ``model``, when already computed.
    """
    labels = splits.test_y.cpu()
    logits = test_logits(model, splits) if logits is None else logits
    out = torch.full((logits.shape[1],), float("nan"))
    for c in range(logits.shape[1]):
        mine = logits[labels == c, c]
        if mine.numel():
            out[c] = torch.quantile(mine, percentile / 100.0)
    return out
