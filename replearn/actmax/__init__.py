"""Activation maximization: the ascent, image priors, the reference classifier, scoring, and the prior choice."""

from replearn.actmax.ascent import ActMaxResult, maximize_activations

__all__ = ["ActMaxResult", "maximize_activations"]
