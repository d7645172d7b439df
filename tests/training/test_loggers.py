"""The logger group: CSV, TensorBoard event files (tags checked), W&B skipped when absent, train.log."""

import csv
import importlib.util
import json

import pytest
from helpers import FAST_ANY_MODEL

from replearn.data import load_splits
from replearn.errors import ReplearnError
from replearn.training.loop import train


def test_csv_logger_matches_jsonl(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST_ANY_MODEL + ["depth=1", "trainer.epochs=2", "logger=csv"])
    train(cfg, tmp_path)
    jsonl = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == set(jsonl[0])
    assert float(rows[1]["val_acc"]) == pytest.approx(jsonl[1]["val_acc"])


def test_default_logger_writes_no_extra_files(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST_ANY_MODEL + ["depth=1", "trainer.epochs=1"])
    assert cfg.logger.name == "jsonl"
    train(cfg, tmp_path)
    assert (tmp_path / "metrics.jsonl").is_file()
    assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "tensorboard").exists()


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_tensorboard_event_file_tags(compose_cfg, tmp_path, model):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = FAST_ANY_MODEL + [f"model={model}", "depth=2", "trainer.epochs=2", "logger=tensorboard",
                        "logger.every_n_steps=3", "logger.histogram_images=50", "logger.embedding_images=40"]
    if model == "cnn":
        overrides += ["model.channels=4", "model.max_channels=8"]
    cfg = compose_cfg("train", overrides)
    train(cfg, tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    for tag in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "accuracy/test", "epoch/lr",
                "step/train_loss", "step/lr"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
    assert [e.step for e in events.Scalars("accuracy/val")] == [1, 2]
    steps = [e.step for e in events.Scalars("step/train_loss")]
    steps_per_epoch = -(-len(load_splits(cfg.data).train_x) // 64)
    assert steps == list(range(0, 2 * steps_per_epoch, 3))  # every 3rd step over both epochs
    assert "first_layer/weights" in tags["images"]
    layers = ["blocks.0", "blocks.1", "head"]
    assert sorted(tags["histograms"]) == sorted(f"activations/{name}" for name in layers)
    projector = (tmp_path / "tensorboard" / "projector_config.pbtxt").read_text()
    for name in layers:
        assert f'tensor_name: "{name.replace(".", "_")}' in projector
    tensors = next((tmp_path / "tensorboard").glob("*/blocks_0/tensors.tsv")).read_text().splitlines()
    assert len(tensors) == 40


def test_tensorboard_missing_is_one_line(compose_cfg, monkeypatch):
    from replearn.conf.logger import validate_logger

    cfg = compose_cfg("train", ["logger=tensorboard"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ReplearnError, match=r"pip install"):
        validate_logger(cfg.logger)


def test_wandb_absent_is_skipped(compose_cfg, tmp_path, caplog):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here; this checks the skip when it is not")
    cfg = compose_cfg("train", FAST_ANY_MODEL + ["depth=1", "trainer.epochs=1", "logger=wandb"])
    with caplog.at_level("WARNING", logger="replearn"):
        final = train(cfg, tmp_path)
    assert final["status"] == "ok"
    assert "wandb package is not installed" in caplog.text


def test_train_log_has_one_line_per_epoch(train_script_run):
    proc, run_dir = train_script_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    log_lines = (run_dir / "train.log").read_text().splitlines()
    assert [line.split(" - ", 1)[1][:9] for line in log_lines if " - epoch " in line] == ["epoch 1/2", "epoch 2/2"]
    assert "torch thread" in log_lines[0]
    # The console shows the same lines without the time stamps.
    assert "epoch 2/2  train loss" in proc.stdout
