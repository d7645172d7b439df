"""Plot functions: each takes tensors (and an optional ``ax``) and returns a matplotlib Figure."""

from replearn.viz.actmax_plot import plot_actmax
from replearn.viz.curves import plot_training_curves
from replearn.viz.embedding import embed_2d, plot_embedding, plot_embeddings_by_layer
from replearn.viz.feature_maps import plot_activation_heatmap, plot_feature_maps, plot_feature_maps_batch
from replearn.viz.grid import block_grid, image_grid
from replearn.viz.topk_plot import plot_top_k
from replearn.viz.weights import first_layer_weights, plot_first_layer

__all__ = [
    "block_grid", "embed_2d", "first_layer_weights", "image_grid", "plot_actmax",
    "plot_activation_heatmap", "plot_embedding", "plot_embeddings_by_layer", "plot_feature_maps",
    "plot_feature_maps_batch", "plot_first_layer", "plot_top_k", "plot_training_curves",
]
