"""Activation maximization: the objective rises, results are seeded, the model is left as it was."""

import pytest
import torch

from replearn.actmax.ascent import maximize_activations
from replearn.errors import ReplearnError
from replearn.models import CNN, MLP
from replearn.recording.hooks import forward_until

LO, HI = (0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081


def _cnn():
    model = CNN(depth=2, channels=4, max_channels=8)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is exercised
        model(torch.randn(32, 1, 28, 28))
    return model.eval()


@pytest.mark.parametrize("kind,layer,param", [
    ("cnn", "blocks.1", "pixel"), ("cnn", "blocks.0", "fourier"), ("cnn", "head", "pixel"), ("mlp", "blocks.1", "pixel"),
])
def test_objective_rises(kind, layer, param):
    model = _cnn() if kind == "cnn" else MLP(depth=2, width=16, norm="batchnorm").eval()
    result = maximize_activations(model, layer, steps=40, lr=0.1, param=param, progress=False)
    u = result.images.shape[0]
    assert result.images.shape == (u, 1, 28, 28) and result.objective_history.shape == (40,)
    assert float((result.objective_end > result.objective_start).float().mean()) >= 0.75
    gain = float(result.objective_end.mean() - result.objective_start.mean())
    assert gain > 0.1 * float(result.objective_start.abs().mean() + 1e-3)
    assert result.images.min() >= LO - 1e-5 and result.images.max() <= HI + 1e-5
    # The reported objective is the model's own response to the returned images.
    with torch.no_grad():
        out = forward_until(model, layer, result.images)
    own = out.mean((2, 3)) if out.dim() == 4 else out
    torch.testing.assert_close(own[torch.arange(u), torch.tensor(result.units)], result.objective_end)


def test_seeded_and_deterministic():
    model = _cnn()
    run = lambda seed: maximize_activations(model, "blocks.1", units=[0, 2], steps=10, seed=seed, progress=False)  # noqa: E731
    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.images, b.images) and torch.equal(a.objective_history, b.objective_history)
    assert not torch.equal(a.images, c.images)
    assert a.units == [0, 2]


def test_model_is_left_untouched():
    model = _cnn()
    model.train()
    model.blocks[0].conv.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    maximize_activations(model, "blocks.1", units=[1], steps=3, progress=False)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.is_contiguous() for p in model.parameters())


def test_bad_arguments_raise():
    model = MLP(depth=1, width=4)
    with pytest.raises(ReplearnError, match="units"):
        maximize_activations(model, "blocks.0", units=[4], steps=2, progress=False)
    with pytest.raises(ReplearnError, match="param"):
        maximize_activations(model, "blocks.0", steps=2, param="wavelet", progress=False)
    with pytest.raises(ReplearnError, match="unknown layer"):
        maximize_activations(model, "blocks.5", steps=2, progress=False)
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_prior_comparison_figure():
    from matplotlib.figure import Figure

    from replearn.viz.actmax_plot import plot_prior_comparison

    protos = {"pixel": torch.rand(3, 1, 28, 28), "gmm": torch.rand(3, 1, 28, 28)}
    fig = plot_prior_comparison(protos, class_names=["a", "b", "c"], row_notes={"gmm": "3/3 all"}, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert fig.axes[3].get_ylabel() == "gmm\n3/3 all" and fig.axes[1].get_title() == "b"
    with pytest.raises(ReplearnError, match="one shape"):
        plot_prior_comparison({"pixel": torch.rand(3, 1, 28, 28), "gmm": torch.rand(2, 1, 28, 28)})
    with pytest.raises(ReplearnError, match="no prototypes"):
        plot_prior_comparison({})
