"""Model shapes, names, gradients and init."""

import pytest
import torch

from replearn.models import CNN, MLP, build_model, cnn_schedule


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("depth", [1, 2, 5, 16])
def test_forward_backward_and_names(name, depth):
    model = build_model(name, depth=depth)
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    logits = model(x)
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    modules = dict(model.named_modules())
    assert model.hidden_layers() == [f"blocks.{i}" for i in range(depth)]
    assert model.layer_names()[-1] == "head"
    assert all(n in modules for n in model.layer_names())


@pytest.mark.parametrize("name,norm", [("mlp", "layernorm"), ("mlp", "batchnorm"), ("cnn", "batchnorm")])
def test_depth_100_residual_runs(name, norm):
    model = build_model(name, depth=100, residual=True, norm=norm)
    logits = model(torch.randn(2, 1, 28, 28))
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    first = model.blocks[0]
    weight = first.linear.weight if name == "mlp" else first.conv.weight
    assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


@pytest.mark.parametrize("depth", list(range(1, 21)))
def test_cnn_schedule_valid_for_any_depth(depth):
    schedule = cnn_schedule(depth, 32, 128)
    assert len(schedule) == depth
    assert sum(stride == 2 for _, stride in schedule) == min(depth, 3)  # 28 -> 14 -> 7 -> 4
    assert schedule[0] == (32, 2) and schedule[-1][0] == {1: 32, 2: 64}.get(depth, 128)
    model = CNN(depth=depth, channels=8, max_channels=16)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    assert model.blocks(torch.randn(1, 1, 28, 28)).shape[-2:] == ((4, 4) if depth >= 3 else (28 >> depth,) * 2)


def _first_last_grad_ratio(init: str, depth: int = 20) -> float:
    torch.manual_seed(0)
    model = MLP(depth=depth, width=256, init=init)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return float(model.blocks[0].linear.weight.grad.norm() / model.blocks[-1].linear.weight.grad.norm())


def test_he_init_keeps_deep_relu_stacks_trainable():
    he, default = _first_last_grad_ratio("he"), _first_last_grad_ratio("default")
    assert 0.1 < he < 10  # first-layer gradient stays on the last layer's scale
    assert default < 1e-3  # PyTorch's default init vanishes at depth 20


def test_invalid_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="depth=0"):
        MLP(depth=0)
    with pytest.raises(ValueError, match="norm='bn'"):
        CNN(depth=2, norm="bn")
    with pytest.raises(ValueError, match="model='transformer'"):
        build_model("transformer", depth=2)
