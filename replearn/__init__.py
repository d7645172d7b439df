"""replearn: a PyTorch lab for seeing how deep networks build representations.

The public surface for notebooks and scripts, loaded on first use (``import replearn`` stays cheap)::

    import replearn
    run = replearn.train(["depth=3", "trainer.epochs=2"])        # or replearn.load_run("outputs/...")
    with replearn.record_activations(run.model, "all") as acts: ...
    replearn.plot_first_layer(replearn.first_layer_weights(run.model))

See ``__all__`` (and the README's "Use it from Python").
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it. Imported on first access (module __getattr__, PEP 562).
_EXPORTS = {
    # configs, training, runs
    "compose_config": "replearn.api",
    "train": "replearn.api",
    "load_run": "replearn.runs",
    "resolve_run_dir": "replearn.runs",
    "LoadedRun": "replearn.runs",
    "build_model": "replearn.models",
    "load_splits": "replearn.data",
    "make_synthetic": "replearn.data",
    "ReplearnError": "replearn.errors",
    # forward propagation, node by node
    "load_network": "replearn.trace",
    "forward_trace": "replearn.trace",
    "format_trace": "replearn.trace",
    "draw_network": "replearn.trace",
    "trace_model": "replearn.trace",
    "format_model_trace": "replearn.trace",
    # looking inside
    "record_activations": "replearn.recording",
    "capture_activations": "replearn.recording",
    "top_k_examples": "replearn.recording",
    "top_k_for_layer": "replearn.recording",
    "crop_receptive_fields": "replearn.recording",
    "maximize_activations": "replearn.actmax",
    "extract_features": "replearn.analysis",
    "ridge_probe": "replearn.analysis",
    "probe_layers": "replearn.analysis",
    "linear_cka": "replearn.analysis",
    "cka_matrix": "replearn.analysis",
    "cross_model_cka": "replearn.analysis",
    "analyze_model": "replearn.analysis",
    "analyze_run": "replearn.analysis",
    "train_shuffled_control": "replearn.analysis",
    "load_shuffled_control": "replearn.analysis",
    "part_targets": "replearn.analysis",
    "concept_probe_layers": "replearn.analysis",
    "dissect_model": "replearn.dissection",
    "load_concept_masks": "replearn.dissection.concept_cache",
    # plots: tensors in, matplotlib Figure out
    "first_layer_weights": "replearn.viz",
    "plot_first_layer": "replearn.viz",
    "plot_top_k": "replearn.viz",
    "plot_actmax": "replearn.viz",
    "plot_feature_maps": "replearn.viz",
    "plot_activation_heatmap": "replearn.viz",
    "embed_2d": "replearn.viz",
    "plot_embedding": "replearn.viz",
    "plot_embeddings_by_layer": "replearn.viz",
    "plot_training_curves": "replearn.viz",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'replearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
