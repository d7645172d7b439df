"""The same-shape layer probe runs exactly the model's weight-layer arithmetic."""

import pytest
import torch

from replearn.bench.probe import layer_input_shapes, layer_probe
from replearn.bench.train import train_flops_per_sample
from replearn.models import CNN, MLP


def test_shapes_follow_the_forward_pass():
    shapes = [tuple(s) for _, s in layer_input_shapes(CNN(depth=3, channels=8, max_channels=16), 4)]
    assert shapes == [(4, 1, 28, 28), (4, 8, 14, 14), (4, 16, 7, 7), (4, 16)]


@pytest.mark.parametrize("model", [MLP(depth=2, width=32), CNN(depth=2, channels=8)], ids=["mlp", "cnn"])
def test_probe_counts_the_same_flops_as_a_training_step(model):
    probe = layer_probe(model, 16, repeats=1, steps=1)
    # A training step's FLOPs are its weight layers' (activations and norms are not counted by torch).
    assert probe["mflop_per_sample"] == pytest.approx(train_flops_per_sample(model, batch=16) / 1e6, rel=0.02)
    assert probe["gflops"] > 0


def test_channels_last_probe_runs_in_that_format():
    model = CNN(depth=2, channels=8).to(memory_format=torch.channels_last)
    assert layer_probe(model, 8, repeats=1, steps=1, memory_format=torch.channels_last)["gflops"] > 0
