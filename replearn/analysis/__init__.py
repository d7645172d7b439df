"""Per-run representation analysis: linear probes, CKA, trainability and pattern complexity.

Entry points: :func:`analyze_run` (run folder -> ``analysis.json``) and
:func:`analyze_model` (model + splits -> dict, no files). Building blocks
(:func:`extract_features`, :func:`cka_matrix`, :func:`ridge_probe`, ...) are
re-exported for the report builder and notebooks.
"""

from replearn.analysis.cka import CentredLayers, MinibatchCKA, cka_matrix, cross_model_cka, linear_cka, minibatch_cka
from replearn.analysis.complexity import (
    class_selectivity,
    effective_receptive_field,
    participation_ratio,
    spectral_centroid,
)
from replearn.analysis.concept_probes import ConceptTargets, concept_probe_layers, part_targets, within_class_probe
from replearn.analysis.controls import load_shuffled_control, train_shuffled_control
from replearn.analysis.features import extract_features, load_features, random_projection, save_features
from replearn.analysis.probes import logistic_probe, probe_layers, ridge_probe
from replearn.analysis.run import ANALYSIS_NAME, analyze_model, analyze_run, load_analysis
from replearn.analysis.trainability import dead_unit_fraction, gradient_norms

__all__ = [
    "ANALYSIS_NAME", "analyze_model", "analyze_run", "CentredLayers", "cka_matrix", "class_selectivity",
    "concept_probe_layers", "ConceptTargets", "cross_model_cka", "dead_unit_fraction", "effective_receptive_field",
    "extract_features", "gradient_norms", "linear_cka", "load_analysis", "load_features", "load_shuffled_control",
    "logistic_probe", "minibatch_cka", "MinibatchCKA", "part_targets", "participation_ratio", "probe_layers",
    "random_projection", "ridge_probe", "save_features", "spectral_centroid", "train_shuffled_control",
    "within_class_probe",
]
