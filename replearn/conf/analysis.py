"""Schema of the ``analysis`` node (per-run analysis; see :mod:`replearn.analysis`)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from replearn.errors import ReplearnError


@dataclass
class AnalysisConfig:
    # Read by the training entry point: run analyze_run on the finished run folder.
    enabled: bool = True
    # Training images the probes are fitted on, and held-out (test) images every measure is scored on.
    n_train: int = 10000
    n_eval: int = 10000
    probe_method: str = "ridge"  # ridge (closed form) | logistic (sklearn LBFGS, ~10x slower)
    # Channel pooling of conv maps before probes/CKA/selectivity: mean | max.
    pool: str = "mean"
    # Layers wider than this are randomly projected (fixed seed) to this many dims.
    max_dim: int = 4096
    # Activation maximization for the spectral centroid: units per layer and ascent steps.
    actmax_units: int = 4
    actmax_steps: int = 16
    # Effective receptive field: units per layer and images averaged over.
    erf_units: int = 8
    erf_images: int = 16
    # Training images used for the per-layer gradient norms (at init and at the end).
    grad_images: int = 512
    # Chance floor of the probes: label shuffles (probe fitted on shuffled train labels, scored on
    # shuffled test labels); 0 skips it.
    probe_shuffles: int = 5
    # Network dissection (replearn.dissection) of every layer against digit-concept masks of the first
    # dissect_images evaluation images. Units without a spatial map (MLP, logits) use the gradient x
    # input proxy on the first dissect_grad_images of them. Defaults from Bau et al. 2017.
    dissection: bool = True
    dissect_images: int = 10000
    dissect_grad_images: int = 1000
    dissect_quantile: float = 0.005
    dissect_iou: float = 0.04
    dissect_quantile_images: int = 1000
    # The within-image null (replearn.dissection.null): a label must also beat its concept's IoU with masks
    # permuted among images of the same class, at this quantile over this many permutations (0: no null).
    dissect_null_permutations: int = 20
    dissect_null_quantile: float = 0.99
    # Probe images for each concept's ceiling and ink baseline at each map geometry.
    dissect_ceiling_images: int = 2000
    # Within-class concept probes (replearn.analysis.concept_probes): how linearly decodable each level-1/2
    # concept's presence, count and position is from a layer with the class regressed out, on the dissection's
    # probe images (half fit, half scored). A map-free measure: it works alike for MLPs and CNNs.
    concept_probes: bool = True
    # CKA on unpooled conv maps with the minibatch unbiased estimator (slower; CNNs only).
    cka_minibatch: bool = False
    cka_batch_size: int = 500
    # Also analyse the random-init network of the same architecture as a control.
    control: bool = True
    # Also analyse a twin of the run trained on shuffled labels (same architecture, config and budget; trained
    # into <run>/controls/shuffled_labels on first use, reused after): whatever it shows comes from the images
    # and the training, not from the labels.
    shuffled_control: bool = True
    seed: int = 0
    batch_size: int = 1000
    device: str = "cpu"


def validate_analysis(cfg) -> None:
    """Raise ReplearnError naming the first invalid field of an ``analysis`` node."""
    for key in ("n_train", "n_eval", "max_dim", "batch_size", "grad_images"):
        if int(cfg[key]) < 1:
            raise ReplearnError(f"analysis.{key}={cfg[key]} is invalid; use a positive integer")
    for key in ("dissect_images", "dissect_grad_images", "dissect_quantile_images"):
        if int(cfg[key]) < 1:
            raise ReplearnError(f"analysis.{key}={cfg[key]} is invalid; use a positive integer")
    if not 0.0 < float(cfg.dissect_quantile) < 1.0:
        raise ReplearnError(f"analysis.dissect_quantile={cfg.dissect_quantile} is invalid; use a fraction in (0, 1), e.g. 0.005")
    if not 0.0 <= float(cfg.dissect_iou) < 1.0:
        raise ReplearnError(f"analysis.dissect_iou={cfg.dissect_iou} is invalid; use a value in [0, 1), e.g. 0.04")
    if int(cfg.dissect_ceiling_images) < 1:
        raise ReplearnError(f"analysis.dissect_ceiling_images={cfg.dissect_ceiling_images} is invalid; use a positive integer")
    if not 0.0 < float(cfg.dissect_null_quantile) < 1.0:
        raise ReplearnError(f"analysis.dissect_null_quantile={cfg.dissect_null_quantile} is invalid; "
                            "use a fraction in (0, 1), e.g. 0.99")
    for key in ("actmax_units", "actmax_steps", "erf_units", "erf_images", "probe_shuffles", "dissect_null_permutations"):
        if int(cfg[key]) < 0:
            raise ReplearnError(f"analysis.{key}={cfg[key]} is invalid; use 0 (skip) or a positive integer")
    if int(cfg.n_train) < 10:
        raise ReplearnError(f"analysis.n_train={cfg.n_train} is too small for a probe; use at least 10")
    if cfg.probe_method not in ("ridge", "logistic"):
        raise ReplearnError(f"analysis.probe_method={cfg.probe_method!r} is invalid; use ridge or logistic")
    if cfg.pool not in ("mean", "max"):
        raise ReplearnError(f"analysis.pool={cfg.pool!r} is invalid; use mean or max")
    if int(cfg.cka_batch_size) < 4:
        raise ReplearnError(f"analysis.cka_batch_size={cfg.cka_batch_size} is invalid; use at least 4")


def register() -> None:
    ConfigStore.instance().store(group="analysis", name="analysis_schema", node=AnalysisConfig)


register()
