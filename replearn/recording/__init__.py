"""Looking at activations: forward hooks (one recording API), top-k examples, receptive fields."""

from replearn.recording.hooks import capture_activations, record_activations, resolve_layers
from replearn.recording.topk import crop_receptive_fields, top_k_examples, top_k_for_layer

__all__ = ["capture_activations", "crop_receptive_fields", "record_activations", "resolve_layers", "top_k_examples",
           "top_k_for_layer"]
