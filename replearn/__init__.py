"""replearn: a PyTorch lab for seeing how deep networks build representations."""

__version__ = "0.1.0"
