"""Network dissection on MNIST: which units detect edges and strokes, parts and shapes, whole digits.

- :mod:`replearn.dissection.concepts`: per-image concept masks at three levels, built
  with scikit-image/scipy morphology and cached per dataset;
- :mod:`replearn.dissection.maps`: unit maps (conv activations, or the gradient x input
  proxy for MLP units; the logits are labelled by their class);
- :mod:`replearn.dissection.registration`: each layer's grid of receptive-field centres;
- :mod:`replearn.dissection.dissect`: thresholds, IoU per unit and concept, labels, read
  against the ceilings and the ink baseline (:mod:`.references`) and a within-class null (:mod:`.null`).
"""

from replearn.dissection.dissect import LEVEL_NAMES, DissectionSettings, LayerDissection, dissect_layers, dissect_model
from replearn.dissection.maps import MapSource, PlantedSource, grad_x_input_maps, layer_method
from replearn.dissection.registration import Geometry

__all__ = [
    "LEVEL_NAMES", "DissectionSettings", "Geometry", "LayerDissection", "MapSource", "PlantedSource", "dissect_layers",
    "dissect_model", "grad_x_input_maps", "layer_method",
]
