"""Model shapes, names, gradients and init."""

import pytest
import torch

from replearn.cli.check import check_config
from replearn.errors import ReplearnError
from replearn.models import CNN, MLP, build_model, build_model_from_config, cnn_schedule, count_parameters, cover_kernel
from replearn.recording.receptive_field import receptive_fields


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
    with pytest.raises(ValueError, match="head='flat' is not supported; choose one of pooled, flatten"):
        CNN(depth=2, head="flat")
    with pytest.raises(ValueError, match="reach='wide' is not supported; choose one of grow, cover"):
        CNN(depth=2, reach="wide")


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_flatten_head_reads_the_whole_last_map(depth):
    torch.manual_seed(0)
    model = CNN(depth=depth, channels=4, max_channels=8, head="flatten").eval()
    pooled = CNN(depth=depth, channels=4, max_channels=8)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        last = model.blocks(x)  # (B, C, h, w)
        assert model.head.in_features == last[0].numel() and pooled.head.in_features == last.shape[1]
        # The head's weights are per (channel, y, x): the logits are a linear map of the unpooled block output.
        weight = model.head.weight.view(10, *last.shape[1:])  # (classes, C, h, w)
        expected = torch.einsum("bchw,kchw->bk", last, weight) + model.head.bias
        assert torch.allclose(model(x), expected, atol=1e-5)
    assert model.layer_names() == pooled.layer_names() and model.layer_names()[-1] == "head"
    # Recording and probes find the same layers by name (torchvision's extractor is the tests' oracle).
    from torchvision.models.feature_extraction import create_feature_extractor  # lazy: only this test needs it

    feats = create_feature_extractor(model, return_nodes=model.layer_names())(x)
    assert feats["head"].shape == (3, 10) and torch.equal(feats[f"blocks.{depth - 1}"], last)


@pytest.mark.parametrize("image_size", [28, 56])
def test_cover_reach_sees_the_whole_image_at_every_depth(image_size):
    for depth in range(1, 9):
        grow = CNN(depth=depth, channels=4, max_channels=8, image_size=image_size)
        cover = CNN(depth=depth, channels=4, max_channels=8, image_size=image_size, reach="cover")
        last = f"blocks.{depth - 1}"
        assert receptive_fields(cover)[last][0] >= image_size, depth
        if depth <= 3:  # the 3x3 stack reaches 3, 7, 15 px: short of the image
            assert receptive_fields(grow)[last][0] < image_size, depth
        x = torch.zeros(1, 1, image_size, image_size)
        assert cover.blocks(x).shape == grow.blocks(x).shape  # same channels and map sizes
        # Only the first kernel differs: (k^2 - 9) more weights per first-block channel.
        kernel = cover_kernel(depth, image_size)
        assert cover.blocks[0].conv.kernel_size == (kernel, kernel) and kernel % 2 == 1
        assert count_parameters(cover) - count_parameters(grow) == (kernel**2 - 9) * 4


@pytest.mark.parametrize("depth", [1, 2])
def test_cover_reach_gradient_touches_every_pixel(depth):
    """The centre unit of the last block depends on every pixel (tanh: no flat regions), not only on a 3-7 px patch."""
    torch.manual_seed(0)
    model = CNN(depth=depth, channels=2, max_channels=2, norm="none", activation="tanh", reach="cover").double()
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    out = model.blocks(x)  # (1, C, h, w)
    (grad,) = torch.autograd.grad(out[0, 0, out.shape[2] // 2, out.shape[3] // 2], x)
    assert grad.ne(0).all()


def test_head_and_reach_overrides_compose_into_their_own_sweep_folders(compose_cfg):
    folders = {}
    for overrides in ([], ["model.head=flatten"], ["model.reach=cover"], ["model.head=flatten", "model.reach=cover"]):
        cfg = compose_cfg("train", ["experiment=depth_cnn", "depth=1", *overrides], return_hydra_config=True)
        check_config("train", ["experiment=depth_cnn", "depth=1", *overrides])
        folders[tuple(overrides)] = cfg.hydra.sweep.dir
        net = build_model_from_config(cfg.model)
        assert (net.head.in_features == 32 * 14 * 14) == ("model.head=flatten" in overrides)
        assert (net.blocks[0].conv.kernel_size[0] > 3) == ("model.reach=cover" in overrides)
        assert "model.head" in cfg.hydra.job.config.override_dirname.exclude_keys
    # The defaults keep the documented folder; every other head/reach gets its own.
    assert folders[()] == "multirun/depth_cnn" and len(set(folders.values())) == 4
    assert folders[("model.head=flatten",)] == "multirun/depth_cnn_flatten"


@pytest.mark.parametrize("override,expected", [
    ("model.head=flat", "model.head='flat' is invalid: choose one of pooled, flatten"),
    ("model.reach=wide", "model.reach='wide' is invalid: choose one of grow, cover"),
])
def test_bad_head_or_reach_fails_before_training_with_one_line(override, expected):
    with pytest.raises(ReplearnError) as info:
        check_config("train", ["model=cnn", override])
    assert expected in str(info.value) and "\n" not in str(info.value)
