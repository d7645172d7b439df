"""The real configs compose, instantiate, and reject bad overrides with one clear line."""

import itertools
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from replearn.cli.check import check_config
from replearn.conf.validate import validate_train
from replearn.errors import ReplearnError
from replearn.models import build_model
from replearn.training.loop import build_optimizer, build_scheduler, model_kwargs

MODELS, DATA, OPTIMS, SCHEDULES = ["mlp", "cnn"], ["mnist", "fashion_mnist", "synthetic"], ["adam", "sgd"], ["none", "cosine", "onecycle"]


@pytest.mark.parametrize("model,data,optim", list(itertools.product(MODELS, DATA, OPTIMS)))
def test_every_group_option_composes_and_instantiates(compose_cfg, model, data, optim):
    cfg = compose_cfg("train", [f"model={model}", f"data={data}", f"optim={optim}", "depth=2"])
    validate_train(cfg)
    assert cfg.model.depth == 2  # shared by interpolation, not copied
    net = build_model(**model_kwargs(cfg.model))
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


@pytest.mark.parametrize("overrides", [["depth=5"], ["model=cnn", "depth=4"], ["data=fashion_mnist", "depth=3"]])
def test_documented_commands_compose(overrides):
    check_config("train", overrides)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("depth=three", "depth='three' is invalid"),
        ("depth=0", "depth=0 is invalid: must be an integer >= 1"),
        ("depth=-2", "depth=-2 is invalid: must be an integer >= 1"),
        ("model.width=0", "model.width=0 is invalid: must be an integer >= 1"),
        ("model=transformer", "model=transformer is invalid: choose one of cnn, mlp"),
        ("data=cifar", "data=cifar is invalid: choose one of fashion_mnist, mnist, synthetic"),
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


@pytest.mark.parametrize("override", ["depth=three", "model=transformer"])
def test_script_prints_one_line_and_no_traceback(override, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), override, f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # failed before any work started
