"""The run page: every figure of a trained run, and index.html (``scripts/visualize.py``)."""

from replearn.visualize.run import visualize_run

__all__ = ["visualize_run"]
