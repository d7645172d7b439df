"""Network dissection on MNIST: which units detect edges and strokes, parts and shapes, whole digits.

- :mod:`replearn.dissection.concepts`: per-image concept masks at three levels, built
  with scikit-image/scipy morphology and cached per dataset;
- :mod:`replearn.dissection.maps`: unit maps (conv activations, or the gradient x input
  proxy for units without a spatial map);
- :mod:`replearn.dissection.dissect`: thresholds, IoU per unit and concept, labels.
"""

from replearn.dissection.dissect import LEVEL_NAMES, DissectionSettings, LayerDissection, dissect_layers, dissect_model
from replearn.dissection.maps import MapSource, grad_x_input_maps, layer_method

__all__ = [
    "LEVEL_NAMES", "DissectionSettings", "LayerDissection", "MapSource", "dissect_layers", "dissect_model",
    "grad_x_input_maps", "layer_method",
]
