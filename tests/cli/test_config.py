"""The real configs compose, instantiate, and reject bad overrides with one clear line.

The documented commands are checked in test_documented_commands.py; the scripts' error lines in test_errors.py.
"""

import itertools

import pytest
import torch

from replearn.cli.check import check_config
from replearn.conf.validate import validate_train
from replearn.errors import ReplearnError
from replearn.models import build_model_from_config
from replearn.training.optim import build_optimizer, build_scheduler

MODELS, DATA, OPTIMS = ["mlp", "cnn"], ["mnist", "fashion_mnist", "synthetic"], ["adam", "sgd"]
SCHEDULES = ["none", "cosine", "onecycle"]


@pytest.mark.parametrize("model,data,optim", list(itertools.product(MODELS, DATA, OPTIMS)))
def test_every_group_option_composes_and_instantiates(compose_cfg, model, data, optim):
    cfg = compose_cfg("train", [f"model={model}", f"data={data}", f"optim={optim}", "depth=2"])
    validate_train(cfg)
    assert cfg.model.depth == 2  # shared by interpolation, not copied
    net = build_model_from_config(cfg.model)
    assert len(net.hidden_layers()) == 2
    opt = build_optimizer(cfg.optim, net.parameters())
    for schedule in SCHEDULES:
        cfg.trainer.schedule = schedule
        build_scheduler(cfg.trainer, opt, cfg.optim.lr, total_steps=10)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("model", MODELS)
def test_trainer_defaults_follow_the_model_and_can_be_overridden(compose_cfg, model):
    cfg = compose_cfg("train", [f"model={model}"])
    expected = compose_cfg("train", [f"model={model}", f"trainer={model}"])
    assert cfg.trainer == expected.trainer
    other = "cnn" if model == "mlp" else "mlp"
    assert compose_cfg("train", [f"model={model}", f"trainer={other}"]).trainer.batch_size != cfg.trainer.batch_size


@pytest.mark.parametrize(
    "override,expected",
    [
        ("depth=three", "depth='three' is invalid"),
        ("depth=0", "depth=0 is invalid: must be an integer >= 1"),
        ("depth=-2", "depth=-2 is invalid: must be an integer >= 1"),
        ("model.width=0", "model.width=0 is invalid: must be an integer >= 1"),
        ("model=transformer", "model=transformer is invalid: choose one of cnn, mlp"),
        ("data=cifar", "data=cifar is invalid: choose one of fashion_mnist, mnist, "),  # and the other data worlds
        ("optim.lr=-0.1", "optim.lr=-0.1 is invalid: must be a number > 0"),
        ("trainer.batch_size=-8", "trainer.batch_size=-8 is invalid: must be an integer >= 1"),
        ("model.norm=bn", "model.norm='bn' is invalid: choose one of none, batchnorm, layernorm"),
        ("model.widht=3", "model.widht is not a config key"),
        ("trainer.schedule=linear", "choose one of none, cosine, onecycle"),
    ],
)
def test_bad_overrides_fail_with_one_line(override, expected):
    with pytest.raises(ReplearnError) as info:
        check_config("train", [override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_sweep_values_are_checked_each():
    check_config("train", ["depth=1,2,3", "model=mlp,cnn"])
    with pytest.raises(ReplearnError, match="depth=0 is invalid"):
        check_config("train", ["depth=1,0"])
