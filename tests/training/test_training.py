"""Training: learning, determinism, resume equivalence, divergence, checkpoints, the script's outputs."""

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import FAST_ANY_MODEL

from replearn.errors import ReplearnError
from replearn.models import CNN, MLP
from replearn.runs.load import load_run, resolve_run_dir
from replearn.training.loop import train


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "samples_per_s")} for row in rows]


@pytest.mark.parametrize("model_cls", [MLP, CNN])
def test_overfits_one_fixed_batch(model_cls):
    torch.manual_seed(0)
    model = model_cls(depth=3)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first


def test_same_seed_gives_identical_metrics(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST_ANY_MODEL + ["depth=2", "trainer.epochs=2"])
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    other = compose_cfg("train", FAST_ANY_MODEL + ["depth=2", "trainer.epochs=2", "seed=1"])
    train(other, tmp_path / "c")
    assert _metrics(tmp_path / "a") != _metrics(tmp_path / "c")


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_resume_matches_uninterrupted_run(compose_cfg, tmp_path, monkeypatch, model):
    # The CNN also shifts its training images: the shifts come from the run's generator, so they resume too.
    base = FAST_ANY_MODEL + [f"model={model}", "depth=2", "trainer.epochs=3",
                   *(["model.width=32"] if model == "mlp" else ["model.channels=8", "trainer.augment_shift=2"])]
    train(compose_cfg("train", base), tmp_path / "full")

    import replearn.training.loop as training

    real_save = training.save_checkpoint

    def save_then_interrupt(state, path):
        real_save(state, path)
        if state["epoch"] == 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C right after epoch 1

    monkeypatch.setattr(training, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(compose_cfg("train", base), tmp_path / "part")
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    assert not (tmp_path / "part" / "final.json").exists()

    final = train(compose_cfg("train", base + [f"trainer.resume={tmp_path / 'part'}"]), tmp_path / "ignored")
    assert final["epochs_completed"] == 3
    assert _metrics(tmp_path / "part") == _metrics(tmp_path / "full")
    full_final = json.loads((tmp_path / "full" / "final.json").read_text())
    assert final["test_acc"] == full_final["test_acc"] and final["test_loss"] == full_final["test_loss"]


def test_divergence_stops_with_clear_message_and_keeps_checkpoint(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST_ANY_MODEL + ["depth=8", "optim=sgd", "optim.lr=1e6", "trainer.schedule=none",
                                       "model.init=he", "trainer.epochs=2"])
    with pytest.raises(ReplearnError, match=r"loss became .* at epoch 1, step \d+.*lower the learning rate"):
        train(cfg, tmp_path)
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["status"] == "diverged"


def test_checkpoint_loads_weights_only_and_rebuilds_model(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST_ANY_MODEL + ["depth=2", "trainer.epochs=1"])
    train(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and "optimizer" in state and "rng" in state
    run = load_run(tmp_path)
    assert run.model.hidden_layers() == ["blocks.0", "blocks.1"] and not run.model.training
    assert resolve_run_dir("latest", root=tmp_path) == tmp_path


def test_finished_run_is_skipped(compose_cfg, tmp_path, caplog):
    cfg = compose_cfg("train", FAST_ANY_MODEL + ["depth=1", "trainer.epochs=1"])
    train(cfg, tmp_path)
    stamp = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="replearn"):
        train(cfg, tmp_path)
    assert "skipping" in caplog.text
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_train_script_writes_every_output(train_script_run):
    proc, run_dir = train_script_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("config.yaml", "metrics.jsonl", "final.json", "checkpoint.pt", "curves.png", ".hydra/config.yaml"):
        assert (run_dir / name).is_file(), name
    final = json.loads((run_dir / "final.json").read_text())
    assert final["status"] == "ok" and final["test_acc"] > 0.5  # synthetic classes are learnable
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert "test accuracy" in proc.stdout
