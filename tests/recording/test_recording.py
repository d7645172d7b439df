"""record_activations / capture_activations / forward_until against torchvision's feature extractor and hand math."""

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from replearn.errors import ReplearnError
from replearn.models import CNN, MLP
from replearn.recording.hooks import capture_activations, forward_until, record_activations

MODELS = {
    "mlp": lambda: MLP(depth=3, width=16),
    "mlp_res_bn": lambda: MLP(depth=4, width=16, residual=True, norm="batchnorm"),
    "cnn": lambda: CNN(depth=3, channels=4, max_channels=8),
    "cnn_res_ln": lambda: CNN(depth=5, channels=4, max_channels=8, residual=True, norm="layernorm", activation="gelu"),
}


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def _warm_batchnorm(model: nn.Module) -> None:
    # Non-trivial running statistics, so eval-mode BatchNorm is not the identity.
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 28, 28))
    model.eval()


@pytest.mark.parametrize("kind", list(MODELS))
def test_bitwise_equal_to_torchvision_feature_extractor(kind):
    model = MODELS[kind]()
    _warm_batchnorm(model)
    names = model.layer_names()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        with record_activations(model, "all") as acts:
            model(x)
        reference = create_feature_extractor(model, return_nodes=names)(x)
    assert list(acts) == names
    for name in names:
        assert torch.equal(acts[name], reference[name]), name
    assert _no_hooks(model)


def test_hand_set_weights_give_exact_values():
    model = MLP(depth=1, width=2, init="default").eval()
    with torch.no_grad():
        lin = model.blocks[0].linear
        lin.weight.zero_()
        lin.weight[0, 0], lin.weight[1, 1] = 1.0, -2.0
        lin.bias.copy_(torch.tensor([0.5, 0.25]))
        model.head.weight.copy_(torch.arange(20.0).view(10, 2))
        model.head.bias.zero_()
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 3.0, 1.0
    with record_activations(model, ["blocks.0", "blocks.0.linear", "head"]) as acts:
        model(x)
    # pre-activations: 3 + 0.5 = 3.5 and -2 * 1 + 0.25 = -1.75; ReLU zeroes the second unit.
    assert torch.equal(acts["blocks.0.linear"], torch.tensor([[3.5, -1.75]]))
    assert torch.equal(acts["blocks.0"], torch.tensor([[3.5, 0.0]]))
    assert torch.equal(acts["head"], 3.5 * torch.arange(0.0, 20.0, 2.0).view(1, 10))


def test_hooks_removed_after_exception_and_outputs_detached():
    model = CNN(depth=2, channels=4)
    with pytest.raises(RuntimeError, match="boom"), record_activations(model) as acts:
        model(torch.randn(2, 1, 28, 28))
        raise RuntimeError("boom")
    assert _no_hooks(model)
    assert not acts["head"].requires_grad


def test_keeps_last_forward_single_name_request_order_and_cpu():
    model = MLP(depth=2, width=8).eval()
    with record_activations(model, "blocks.1", to_cpu=True) as acts:
        model(torch.randn(3, 1, 28, 28))
        model(torch.randn(7, 1, 28, 28))
    assert list(acts) == ["blocks.1"] and acts["blocks.1"].shape == (7, 8) and acts["blocks.1"].device.type == "cpu"
    with record_activations(model, ["head", "blocks.0"]) as acts:
        model(torch.randn(2, 1, 28, 28))
    assert list(acts) == ["head", "blocks.0"]


def test_unknown_layer_lists_valid_names():
    model = MLP(depth=3, width=8)
    with (pytest.raises(ReplearnError, match=r"^unknown layer 'blocks.9'; valid layers: blocks.0, blocks.1, blocks.2, head$"),
          record_activations(model, ["blocks.0", "blocks.9"])):
        pass
    assert _no_hooks(model)


def test_all_on_plain_module_means_leaf_modules():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 3), nn.ReLU())
    with record_activations(model) as acts:
        out = model(torch.randn(2, 1, 28, 28))
    assert list(acts) == ["0", "1", "2"]
    assert torch.equal(acts["2"], out.detach())


@pytest.mark.parametrize("kind", ["mlp_res_bn", "cnn"])
def test_capture_matches_per_batch_recording(kind):
    model = MODELS[kind]()
    _warm_batchnorm(model)
    model.train()
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    norm = lambda x: (x.float() / 255 - 0.1307) / 0.3081  # noqa: E731
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    full = capture_activations(model, images, batch_size=4, normalize=norm)
    assert model.training, "capture must restore train mode"
    assert all(torch.equal(stats[k], v) for k, v in model.state_dict().items()), "capture ran in train mode"
    model.eval()
    for start in range(0, 10, 4):
        with torch.no_grad(), record_activations(model) as acts:
            model(norm(images[start:start + 4]))
        for name, value in acts.items():
            assert torch.equal(full[name][start:start + 4], value), name
    for pool, reduce in (("mean", lambda t: t.mean((2, 3))), ("max", lambda t: t.amax((2, 3)))):
        pooled = capture_activations(model, images, batch_size=4, normalize=norm, pool=pool)
        for name, value in full.items():
            expect = reduce(value) if value.dim() == 4 else value
            assert pooled[name].shape == expect.shape
            torch.testing.assert_close(pooled[name], expect, rtol=1e-6, atol=1e-6)
    full["head"].add_(1)  # results are ordinary tensors, editable outside inference mode


def test_capture_rejects_bad_input():
    model = MLP(depth=1, width=4)
    with pytest.raises(ReplearnError, match="pool"):
        capture_activations(model, torch.zeros(2, 1, 28, 28), pool="sum")
    with pytest.raises(ReplearnError, match=r"\(N, C, H, W\)"):
        capture_activations(model, torch.zeros(2, 28, 28))
    with pytest.raises(ReplearnError, match="unknown layer"):
        capture_activations(model, torch.zeros(2, 1, 28, 28), layers=["nope"])


def test_forward_until_stops_after_the_layer():
    model = CNN(depth=3, channels=4).eval()
    calls = []
    model.head.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 1, 28, 28)
    out = forward_until(model, "blocks.1", x)
    assert not calls
    with torch.no_grad(), record_activations(model, "blocks.1") as acts:
        model(x)
    assert torch.equal(out.detach(), acts["blocks.1"]) and out.requires_grad
