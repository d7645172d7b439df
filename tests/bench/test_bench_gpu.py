"""suite=gpu: one line without CUDA, and the configs it would train are the real defaults on cuda.

The CUDA path itself needs a GPU and is not run here.
"""

import json

import pytest
import torch
from helpers import FAST_ANY_MODEL, run_script
from omegaconf import OmegaConf

from replearn.bench import gpu
from replearn.bench.report import run_suite
from replearn.conf.validate import validate_bench
from replearn.errors import ReplearnError

# Keys the check sets on purpose; everything else must equal the train.py default.
SET_BY_PLAN = {"device", "seed"}
SET_BY_PLAN_TRAINER = {"progress", "force"}


def _without_plan_keys(cfg):
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in SET_BY_PLAN:
        tree.pop(key)
    for key in SET_BY_PLAN_TRAINER:
        tree["trainer"].pop(key)
    tree["analysis"].pop("enabled")
    return tree


def test_suite_gpu_is_a_valid_choice(compose_cfg):
    validate_bench(compose_cfg("bench", ["suite=gpu"]))
    with pytest.raises(ReplearnError, match="gpu"):  # the one-line error lists it among the choices
        validate_bench(compose_cfg("bench", ["suite=gpus"]))


def test_without_cuda_one_line_and_nothing_written(compose_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    figures = run_suite(compose_cfg("bench", ["suite=gpu"]), tmp_path / "out")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "no CUDA device is available" in lines[0] and "CNN" in lines[0] and "act-max" in lines[0]
    assert figures == {"skipped": lines[0]}
    assert not (tmp_path / "out" / "bench.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the suite would run")
def test_script_without_cuda_exits_0_with_one_line(tmp_path):
    done = run_script("bench.py", "suite=gpu", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1, done.stdout
    assert "no CUDA device is available" in done.stdout
    assert "Traceback" not in done.stderr


def test_plan_trains_the_two_defaults_on_cuda(compose_cfg):
    configs = gpu.plan(compose_cfg("bench", ["suite=gpu", "seed=3"]))
    assert set(configs) == {"mlp", "cnn"}
    for name, overrides in (("mlp", ["depth=5"]), ("cnn", ["model=cnn", "depth=4"])):
        cfg = configs[name]
        assert cfg.device == "cuda" and cfg.seed == 3
        assert cfg.model.name == name and cfg.model.depth == int(overrides[-1].split("=")[1])
        assert cfg.trainer.progress is False and cfg.analysis.enabled is False
        # Apart from those keys, exactly what `python scripts/train.py <overrides>` would train.
        assert _without_plan_keys(cfg) == _without_plan_keys(compose_cfg("train", overrides))
    assert configs["cnn"].trainer.batch_size != configs["mlp"].trainer.batch_size  # each its own trainer preset


def test_plan_carries_the_bench_data_root(compose_cfg, tmp_path):
    configs = gpu.plan(compose_cfg("bench", ["suite=gpu", f"data.root={tmp_path}"]))
    assert all(cfg.data.root == str(tmp_path) for cfg in configs.values())


def test_epochs_to_99_sums_training_seconds_until_the_first_epoch_reaching_it():
    rows = [{"epoch": 1, "epoch_seconds": 0.5, "val_acc": 0.97},
            {"epoch": 2, "epoch_seconds": 0.25, "val_acc": 0.991},
            {"epoch": 3, "epoch_seconds": 0.25, "val_acc": 0.995}]
    assert gpu.epochs_to(rows) == (2, 0.75)
    assert gpu.epochs_to(rows[:1]) == (None, None)
    assert gpu.epochs_to([{"epoch": 1, "epoch_seconds": 1.0, "val_acc": None}]) == (None, None)
    # metrics.jsonl rows as JSON round-trip them
    assert gpu.epochs_to([json.loads(json.dumps(r)) for r in rows], accuracy=0.995) == (3, 1.0)


# The CUDA path's own pieces, run on CPU at small sizes: the same code, only the device differs.

def test_train_figures_on_a_tiny_cpu_run(compose_cfg, capsys):
    cfg = compose_cfg("train", [*FAST_ANY_MODEL, "depth=2", "trainer.epochs=2", "device=cpu"])
    figures = gpu.train_figures("mlp", cfg)
    assert figures["mlp_setup"].endswith("fp32")  # autocast only on CUDA
    assert 0.0 <= figures["mlp_test_acc"] <= 1.0 and figures["mlp_wall_seconds"] > 0
    assert len(figures["mlp_samples_per_s_per_epoch"].split(", ")) == 2
    assert figures["mlp_epoch_to_99_val"] in (1, 2, "not reached")
    assert capsys.readouterr().out.startswith("mlp: ")


def test_record_and_actmax_on_cpu_small(capsys, monkeypatch, one_thread):
    figures = gpu.record_and_actmax(torch.device("cpu"), n_images=64, steps=4)
    assert "all 9 layers, 64 " in figures["capture_setup"]
    assert "64 channels x 4 steps" in figures["actmax_setup"]
    assert figures["capture_seconds"] > 0 and figures["actmax_seconds"] > 0
    out = capsys.readouterr().out
    assert "capture:" in out and "actmax:" in out
