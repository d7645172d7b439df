"""The shuffled-label control: its folder, its config (the run's plus the shuffle), reuse, retraining, loading."""

import shutil

import pytest
import torch
from helpers import FAST, TINY_MLP, interrupt_after

import replearn.analysis.controls as controls
from replearn.analysis.controls import load_shuffled_control, shuffled_control_dir, train_shuffled_control
from replearn.errors import ReplearnError
from replearn.models import build_model_from_config
from replearn.runs.checkpoint import load_checkpoint
from replearn.runs.layout import CHECKPOINT, FINAL, read_config, read_final, read_metrics
from replearn.runs.load import load_run
from replearn.training.loop import train
from replearn.training.resume import IGNORED, flatten, matches

RUN = [*FAST, "trainer.epochs=2"]  # two epochs: one to interrupt after, one to continue


@pytest.fixture(scope="module")
def with_twin(trained_runs, tmp_path_factory):
    """A finished run of RUN with its twin, trained once for the module: tests work on copies."""
    return train_shuffled_control(trained_runs.copy(RUN, tmp_path_factory.mktemp("twin") / "run")).parents[1]


@pytest.fixture
def trainings(monkeypatch) -> list:
    """The override lists of the training processes the control starts (a reused twin starts none)."""
    calls = []
    real = controls._run_training

    def counted(overrides):
        calls.append(overrides)
        return real(overrides)

    monkeypatch.setattr(controls, "_run_training", counted)
    return calls


def _changed_keys(a: dict, b: dict) -> set[str]:
    a, b = flatten(a), flatten(b)
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k) and not matches(k, IGNORED)}


def test_the_twin_is_a_run_folder_of_its_own_with_the_runs_config(with_twin):
    run_dir, twin_dir = with_twin, shuffled_control_dir(with_twin)
    assert twin_dir == run_dir / "controls" / "shuffled_labels"
    assert read_final(twin_dir)["status"] == "ok"
    for name in (CHECKPOINT, "config.yaml", "metrics.jsonl", "train.log", ".hydra"):
        assert (twin_dir / name).exists(), name
    # Recorded like any key, in config.yaml and in the checkpoint: identical to the run's but for the shuffle.
    assert _changed_keys(read_config(run_dir), read_config(twin_dir)) == {"data.shuffle_labels"}
    assert read_config(twin_dir)["data"]["shuffle_labels"] is True
    assert _changed_keys(load_checkpoint(run_dir)["config"], load_checkpoint(twin_dir)["config"]) == {"data.shuffle_labels"}
    assert read_config(twin_dir)["trainer"]["threads"] == 1  # the run's thread count (FAST sets 1)
    assert len(read_metrics(twin_dir)) == 2  # the same budget
    # Same architecture, other weights; eval mode like a loaded run.
    twin, model = load_shuffled_control(run_dir), load_run(run_dir).model
    assert not twin.training and type(twin) is type(model)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert not torch.equal(twin.state_dict()["head.weight"], model.state_dict()["head.weight"])


def test_a_second_call_reuses_the_twin(with_twin, tmp_path, trainings):
    run_dir = shutil.copytree(with_twin, tmp_path / "run")
    twin_dir = shuffled_control_dir(run_dir)
    stamp = (twin_dir / CHECKPOINT).stat().st_mtime_ns, (twin_dir / FINAL).read_bytes()
    assert train_shuffled_control(run_dir, progress=True) == twin_dir  # progress is how it runs, not what it is
    assert trainings == []
    assert ((twin_dir / CHECKPOINT).stat().st_mtime_ns, (twin_dir / FINAL).read_bytes()) == stamp


def test_a_twin_from_another_config_is_retrained_and_not_loaded(with_twin, trained_run, trainings):
    run_dir = trained_run([*RUN, "optim.lr=0.001"])
    shutil.copytree(shuffled_control_dir(with_twin), shuffled_control_dir(run_dir))  # another run's twin, misplaced
    with pytest.raises(ReplearnError, match="trained from another config") as info:
        load_shuffled_control(run_dir)
    assert "\n" not in str(info.value)
    twin_dir = train_shuffled_control(run_dir)
    assert len(trainings) == 1 and "trainer.force=true" in trainings[0]
    assert read_config(twin_dir)["optim"]["lr"] == 0.001
    assert load_shuffled_control(run_dir) is not None


@pytest.mark.slow  # a training process of its own: seconds to start
def test_a_run_with_analysis_gets_a_twin_without(trained_run):
    run_dir = trained_run([*RUN, "analysis.enabled=true", "analysis.n_train=100", "analysis.n_eval=50",
                           "analysis.dissection=false", "analysis.control=false", "analysis.actmax_units=0",
                           "analysis.erf_units=0", "analysis.probe_shuffles=0"])
    twin_dir = train_shuffled_control(run_dir)
    assert _changed_keys(read_config(run_dir), read_config(twin_dir)) == {"data.shuffle_labels", "analysis.enabled"}
    assert not (twin_dir / "analysis.json").exists()


@pytest.mark.slow  # as above
def test_an_interrupted_twin_continues_to_the_same_weights(trained_run, tmp_path, monkeypatch, trainings):
    run_dir = trained_run(RUN)
    _, cfg = controls.twin_settings(run_dir)
    restore = interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):  # killed after its first epoch, as a Ctrl-C would
        train(cfg.copy(), shuffled_control_dir(run_dir))
    restore()
    assert load_shuffled_control(run_dir) is None  # unfinished: no twin yet
    train(cfg.copy(), tmp_path / "whole")  # the same twin, uninterrupted
    train_shuffled_control(run_dir)
    assert len(trainings) == 1 and "trainer.force=true" not in trainings[0]
    resumed, whole = load_shuffled_control(run_dir).state_dict(), load_run(tmp_path / "whole").model.state_dict()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_load_is_none_without_a_twin(trained_run):
    assert load_shuffled_control(trained_run(RUN)) is None


@pytest.mark.parametrize("case", ["empty", "file", "unfinished", "twin"])
def test_what_is_not_a_finished_run_is_refused_in_one_line(case, with_twin, tmp_path):
    if case == "empty":
        run_dir, match = tmp_path / "nothing", "is not a run folder"
        run_dir.mkdir()
    elif case == "file":
        run_dir, match = tmp_path / "notes.txt", "is not a run folder"
        run_dir.write_text("hello")
    elif case == "unfinished":
        run_dir, match = shutil.copytree(with_twin, tmp_path / "run"), "not a finished run"
        (run_dir / FINAL).unlink()
    else:
        run_dir, match = shuffled_control_dir(with_twin), "itself trained on shuffled labels"
    with pytest.raises(ReplearnError, match=match) as info:
        train_shuffled_control(run_dir)
    assert "\n" not in str(info.value)
    if case in ("empty", "file"):
        with pytest.raises(ReplearnError, match=match) as info:
            load_shuffled_control(run_dir)
        assert "\n" not in str(info.value)
    elif case == "twin":  # a run without a twin of its own: nothing to load (a page of any run may ask)
        assert load_shuffled_control(run_dir) is None


def test_a_failed_twin_training_is_one_line(trained_run, monkeypatch):
    run_dir = trained_run(RUN)
    real = controls._run_training
    monkeypatch.setattr(controls, "_run_training", lambda overrides: real([*overrides, "trainer.batch_size=0"]))
    with pytest.raises(ReplearnError, match="training the shuffled-label control failed: trainer.batch_size=0") as info:
        train_shuffled_control(run_dir)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_the_twin_on_real_mnist_is_at_chance_but_trained(mnist_root, tmp_path):
    import replearn

    # 10,000 training images (the rest held out), 2 epochs: seconds, and the loss has time to move.
    overrides = ["data=mnist", f"data.root={mnist_root}", "data.download=false", *TINY_MLP, "trainer.epochs=2",
                 "data.val_size=50000", "trainer.batch_size=64", "trainer.threads=1", "trainer.progress=false"]
    run = replearn.train(overrides, tmp_path / "run")
    assert run.final["test_acc"] > 0.8
    twin_dir = train_shuffled_control(run.run_dir)
    final, metrics = read_final(twin_dir), read_metrics(twin_dir)
    assert final["test_acc"] <= 0.20
    assert read_config(twin_dir)["data"]["root"] == str(mnist_root)  # where the run found its data
    # It trained: the loss fell below its first step's, and the weights left their initialization.
    initial = load_checkpoint(twin_dir)["extra"]["initial_loss"]
    assert metrics[-1]["train_loss"] < initial - 0.05
    torch.manual_seed(run.cfg.seed)  # the network both started from: training seeds, then builds the model
    start = build_model_from_config(run.cfg.model).state_dict()
    twin = load_shuffled_control(run.run_dir).state_dict()
    assert all(not torch.equal(twin[k], start[k]) for k in start)
