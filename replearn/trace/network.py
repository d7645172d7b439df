"""A small fully connected network written as YAML, and its forward pass node by node."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from replearn.errors import ReplearnError
from replearn.trace.safe_yaml import load_yaml_file

ACTIVATIONS = {
    "relu": lambda v: v if v > 0 else 0,
    "linear": lambda v: v,
    # Split by sign so exp never overflows for large |v|.
    "sigmoid": lambda v: 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v)),
    "tanh": math.tanh,
}


@dataclass
class NodeTrace:
    """One node: its inputs, weights and bias, the weighted sum, and the activation's output."""

    inputs: list[float]
    weights: list[float]
    bias: float
    weighted_sum: float
    output: float


@dataclass
class LayerTrace:
    name: str
    activation: str
    nodes: list[NodeTrace]

    @property
    def outputs(self) -> list[float]:
        return [node.output for node in self.nodes]


@dataclass
class NetworkTrace:
    inputs: list[float]
    layers: list[LayerTrace]


# Beyond this, products of a few layers overflow floats (or grow huge exact integers): not a course example.
MAX_MAGNITUDE = 1e12


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReplearnError(f"{where} is {value!r}; it must be a number")
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise ReplearnError(f"{where} is {value!r}; it must be a finite number of magnitude at most {MAX_MAGNITUDE:g}")
    return value


def load_network(path: str | Path) -> dict:
    """Read and check a network YAML file (see configs/networks/course_example.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise ReplearnError(f"network file {path} not found; pass network=<path to a YAML file> "
                            "(example: configs/networks/course_example.yaml)")
    spec = load_yaml_file(path, "network file")  # bounded: size, nesting, alias expansion
    if not isinstance(spec, dict) or "inputs" not in spec or "layers" not in spec:
        raise ReplearnError(f"{path} needs an 'inputs' list and a 'layers' list")
    if not isinstance(spec["inputs"], list) or not spec["inputs"]:
        raise ReplearnError(f"{path}: 'inputs' must be a non-empty list of numbers")
    if not isinstance(spec["layers"], list) or not spec["layers"]:
        raise ReplearnError(f"{path}: 'layers' must be a non-empty list")
    for i, x in enumerate(spec["inputs"]):
        _number(x, f"input {i}")
    width = len(spec["inputs"])
    for index, layer in enumerate(spec["layers"]):
        name = layer.get("name", f"layer {index + 1}") if isinstance(layer, dict) else f"layer {index + 1}"
        if not isinstance(layer, dict) or not isinstance(layer.get("nodes"), list) or not layer["nodes"]:
            raise ReplearnError(f"layer '{name}' needs a non-empty 'nodes' list")
        activation = layer.get("activation", "relu")
        if activation not in ACTIVATIONS:
            raise ReplearnError(f"layer '{name}' has activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        for n, node in enumerate(layer["nodes"]):
            weights = node.get("weights") if isinstance(node, dict) else None
            if not isinstance(weights, list):
                raise ReplearnError(f"layer '{name}' node {n} needs a 'weights' list")
            if len(weights) != width:
                raise ReplearnError(
                    f"layer '{name}' node {n} has {len(weights)} weights but the previous layer has "
                    f"{width} values; give it {width} weights"
                )
            for w_index, w in enumerate(weights):
                _number(w, f"layer '{name}' node {n} weight {w_index}")
            _number(node.get("bias", 0), f"layer '{name}' node {n} bias")
        width = len(layer["nodes"])
    return spec


def forward_trace(spec: dict) -> NetworkTrace:
    """Compute every node's weighted sum and activation, layer by layer."""
    values = list(spec["inputs"])
    layers = []
    for index, layer in enumerate(spec["layers"]):
        activation = layer.get("activation", "relu")
        nodes = []
        for node in layer["nodes"]:
            bias = node.get("bias", 0)
            total = sum(x * w for x, w in zip(values, node["weights"])) + bias
            if not math.isfinite(total) or abs(total) > MAX_MAGNITUDE ** 2:
                raise ReplearnError(f"layer '{layer.get('name', index + 1)}': a weighted sum reaches {float(total):.3g}; "
                                    "use smaller inputs and weights")
            nodes.append(NodeTrace(list(values), list(node["weights"]), bias, total, ACTIVATIONS[activation](total)))
        layers.append(LayerTrace(layer.get("name", f"layer {index + 1}"), activation, nodes))
        values = [n.output for n in nodes]
    return NetworkTrace(list(spec["inputs"]), layers)


def fmt(value: float) -> str:
    """Integers without a decimal point; other numbers with up to 4 significant decimals."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def format_trace(trace: NetworkTrace) -> str:
    """The forward pass as text: inputs x weights, weighted sum, activation output, per node."""
    lines = ["inputs: " + ", ".join(f"x{i} = {fmt(x)}" for i, x in enumerate(trace.inputs))]
    for layer in trace.layers:
        lines.append("")
        lines.append(f"{layer.name} ({layer.activation}):")
        for n, node in enumerate(layer.nodes):
            terms = " + ".join(f"{fmt(x)}·{fmt(w) if w >= 0 else '(' + fmt(w) + ')'}"
                               for x, w in zip(node.inputs, node.weights))
            if node.bias:
                terms += f" + {fmt(node.bias)}" if node.bias >= 0 else f" - {fmt(-node.bias)}"
            products = [x * w for x, w in zip(node.inputs, node.weights)] + ([node.bias] if node.bias else [])
            act = "ReLU" if layer.activation == "relu" else layer.activation
            lines.append(f"  node {n}: {terms} = {_signed_sum(products)}"
                         f" = {fmt(node.weighted_sum)} -> {act} -> {fmt(node.output)}")
    lines.append("")
    lines.append("output: " + ", ".join(fmt(v) for v in trace.layers[-1].outputs))
    return "\n".join(lines)


def _signed_sum(values: list[float]) -> str:
    """``12 - 25`` rather than ``12 + -25``."""
    text = fmt(values[0])
    for v in values[1:]:
        text += f" - {fmt(-v)}" if v < 0 else f" + {fmt(v)}"
    return text
