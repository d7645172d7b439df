"""Resuming and extending runs: what may change, how it continues, how it is recorded; honest statuses."""

import json

import pytest
import torch
import yaml
from helpers import FAST, interrupt_after, snapshot

from replearn.errors import ReplearnError
from replearn.runs.layout import read_resumes
from replearn.training.loop import exploded, train
from replearn.training.resume import config_changes


def _rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "samples_per_s")} for row in rows]


@pytest.fixture
def finished_run(trained_run):
    """A finished 2-epoch run: trained once, each test gets its own copy (tmp_path/run)."""
    return trained_run(FAST + ["trainer.epochs=2"])


@pytest.mark.parametrize("override,key", [
    ("model.width=16", "model.width"),
    ("model.norm=batchnorm", "model.norm"),
    ("data.num_train=700", "data.num_train"),
    ("optim=sgd", "optim.name"),
    ("seed=3", "seed"),
    ("trainer.batch_size=32", "trainer.batch_size"),
])
def test_resume_with_a_fixed_setting_changed_refuses_and_touches_nothing(compose_cfg, finished_run, override, key):
    before = snapshot(finished_run)
    cfg = compose_cfg("train", FAST + ["trainer.epochs=3", override, f"trainer.resume={finished_run}"])
    with pytest.raises(ReplearnError) as info:
        train(cfg, finished_run.parent / "ignored")
    message = str(info.value)
    assert "\n" not in message and key in message and "cannot change" in message
    assert snapshot(finished_run) == before
    assert not (finished_run.parent / "ignored").exists()


def test_extending_a_finished_run_replans_the_schedule_and_records_it(compose_cfg, finished_run, trained_run, tmp_path):
    old_config = (finished_run / "config.yaml").read_text()
    final = train(compose_cfg("train", FAST + ["trainer.epochs=3", f"trainer.resume={finished_run}"]), tmp_path / "x")
    assert final["status"] == "ok" and final["epochs_completed"] == 3
    # The new plan is a 3-epoch one-cycle schedule: the lr of epoch 3 is what a fresh 3-epoch run uses there.
    fresh3 = trained_run(FAST + ["trainer.epochs=3"], "fresh3")
    assert _rows(finished_run)[2]["lr"] == pytest.approx(_rows(fresh3)[2]["lr"], rel=1e-6)
    assert len(_rows(finished_run)) == 3
    # Recorded, not silently overwritten: the old config is kept and the change is listed.
    assert yaml.safe_load((finished_run / "config.yaml").read_text())["trainer"]["epochs"] == 3
    resumes = read_resumes(finished_run)
    assert len(resumes) == 1 and resumes[0]["changes"] == {"trainer.epochs": [2, 3]}
    assert resumes[0]["schedule"] == "re-planned" and resumes[0]["previous_final"]["epochs_completed"] == 2
    assert (finished_run / resumes[0]["previous_config"]).read_text() == old_config


def test_lower_lr_after_divergence_takes_effect(compose_cfg, finished_run, tmp_path):
    # Epochs 1-2 trained well; epoch 3 at a huge lr blows up, keeping the epoch-2 checkpoint.
    boom = FAST + ["trainer.epochs=3", "trainer.schedule=none", "optim.lr=1000", f"trainer.resume={finished_run}"]
    with pytest.raises(ReplearnError) as info:
        train(compose_cfg("train", boom), tmp_path / "x")
    message = str(info.value)
    assert "diverged" in message and "checkpoint of epoch 2 is kept" in message and "optim.lr=100" in message
    assert json.loads((finished_run / "final.json").read_text())["status"] == "diverged"
    calm = FAST + ["trainer.epochs=3", "trainer.schedule=none", "optim.lr=0.0005", f"trainer.resume={finished_run}"]
    final = train(compose_cfg("train", calm), tmp_path / "x")
    assert final["status"] == "ok" and final["epochs_completed"] == 3
    assert _rows(finished_run)[2]["lr"] == pytest.approx(0.0005)  # the new lr is the one used
    # Both attempts are on record; each compares with the checkpoint it continued from (trained at 0.002).
    resumes = read_resumes(finished_run)
    assert [r["changes"]["optim.lr"] for r in resumes] == [[0.002, 1000.0], [0.002, 0.0005]]
    assert resumes[1]["after_epoch"] == 2 and resumes[1]["previous_final"]["status"] == "diverged"


def test_divergence_before_any_checkpoint_says_so(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST + ["trainer.epochs=2", "optim.lr=1000"])
    with pytest.raises(ReplearnError) as info:
        train(cfg, tmp_path / "run")
    assert "no checkpoint" in str(info.value) and "is kept" not in str(info.value)
    before = snapshot(tmp_path / "run")
    with pytest.raises(ReplearnError, match="nothing to resume"):
        train(compose_cfg("train", FAST + ["optim.lr=1e-4", f"trainer.resume={tmp_path / 'run'}"]), tmp_path / "y")
    assert snapshot(tmp_path / "run") == before


def test_adam_at_a_huge_lr_is_diverged_not_ok(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST + ["trainer.epochs=1", "optim.lr=1000"])
    with pytest.raises(ReplearnError, match="diverged"):
        train(cfg, tmp_path)
    assert json.loads((tmp_path / "final.json").read_text())["status"] == "diverged"


def test_exploded_rule():
    assert exploded({"train_loss": 2.0, "train_acc": 0.5}, 2.3, "epoch 1") is None
    assert exploded({"train_loss": 2.3, "train_acc": 0.1}, 2.3, "epoch 1") is None  # stuck at chance is not a blow-up
    assert "over 10x" in exploded({"train_loss": 3e8, "train_acc": 0.4}, 2.3, "epoch 1")
    assert "at chance" in exploded({"val_loss": 9.0, "val_acc": 0.1}, 2.3, "epoch 2")
    assert exploded({"val_loss": None, "val_acc": None}, 2.3, "epoch 2") is None


def test_killed_run_continues_from_its_own_checkpoint(compose_cfg, trained_run, tmp_path, monkeypatch, capsys):
    cfg = compose_cfg("train", FAST + ["trainer.epochs=3"])
    trained_run(FAST + ["trainer.epochs=3"], "full")
    restore = interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part")
    restore()
    (tmp_path / "part" / ".checkpoint.pt-stale.tmp").write_bytes(b"half a checkpoint")  # left by a kill -9
    with open(tmp_path / "part" / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "train_lo')  # a torn last line
    capsys.readouterr()
    final = train(cfg, tmp_path / "part")  # the same command again, no trainer.resume
    assert final["epochs_completed"] == 3
    assert f"warning: dropped 1 row of {tmp_path / 'part' / 'metrics.jsonl'}" in capsys.readouterr().err
    assert _rows(tmp_path / "part") == _rows(tmp_path / "full")
    assert not list((tmp_path / "part").glob(".*.tmp"))
    assert read_resumes(tmp_path / "part")[0]["schedule"] == "restored"


def test_finished_run_started_with_other_settings_is_refused(compose_cfg, finished_run):
    before = snapshot(finished_run)
    with pytest.raises(ReplearnError, match=r"already holds a finished run .*trainer.epochs: 2 -> 3.*trainer.resume="):
        train(compose_cfg("train", FAST + ["trainer.epochs=3"]), finished_run)
    assert snapshot(finished_run) == before


def test_resume_with_fewer_epochs_than_done_is_refused(compose_cfg, finished_run):
    with pytest.raises(ReplearnError, match="already has 2 epochs"):
        train(compose_cfg("train", FAST + ["trainer.epochs=1", f"trainer.resume={finished_run}"]), finished_run)


def test_missing_analysis_is_completed_on_rerun(compose_cfg, tmp_path):
    cfg = compose_cfg("train", ["experiment=depth_smoke", "depth=1"])
    train(cfg, tmp_path)
    (tmp_path / "analysis.json").unlink()  # as if killed between final.json and analysis.json
    stamp = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    train(cfg, tmp_path)
    assert (tmp_path / "analysis.json").is_file()
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == stamp  # not retrained


def test_val_size_zero_reports_nothing_measured(compose_cfg, tmp_path):
    final = train(compose_cfg("train", FAST + ["trainer.epochs=1", "data.val_size=0"]), tmp_path)
    assert final["val_acc"] is None and final["best_val_acc"] is None
    assert _rows(tmp_path)[0]["val_acc"] is None


def test_config_changes_ignore_where_and_how_a_run_is_started():
    old = {"trainer": {"resume": None, "epochs": 2}, "data": {"root": "a"}, "optim": {"lr": 1.0}}
    new = {"trainer": {"resume": "x", "epochs": 2}, "data": {"root": "b"}, "optim": {"lr": 0.1}}
    assert config_changes(old, new) == {"optim.lr": (1.0, 0.1)}


# ---------------------------------------------------------------- a resume checks everything before it touches the folder

def _damage(run_dir, change):
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, run_dir / "checkpoint.pt")


def _rename_weights(state):
    state["model"] = {k.replace("blocks.", "layers."): v for k, v in state["model"].items()}


@pytest.mark.parametrize("change,expected", [
    (_rename_weights, "does not fit this version"),  # an older layout: renamed state-dict keys
    (lambda state: state.pop("rng"), "does not fit this version"),  # an older layout: no RNG states
    (lambda state: state.update(epoch=-3), "its epoch is -3"),
    (lambda state: state["scheduler"].update(last_epoch=10**6), "does not fit this version"),
])
def test_a_checkpoint_that_cannot_be_continued_is_refused_and_touches_nothing(compose_cfg, finished_run, change, expected):
    _damage(finished_run, change)
    before = snapshot(finished_run)
    cfg = compose_cfg("train", FAST + ["trainer.epochs=3", f"trainer.resume={finished_run}"])
    with pytest.raises(ReplearnError) as info:
        train(cfg, finished_run)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert snapshot(finished_run) == before  # final.json, analysis, metrics: all as they were
    assert json.loads((finished_run / "final.json").read_text())["status"] == "ok"


def test_a_file_given_to_resume_trains_nothing_anywhere(compose_cfg, finished_run, tmp_path):
    (finished_run / "checkpoint.pt").unlink()
    before = snapshot(finished_run)
    for spec in (finished_run / "final.json", finished_run / "metrics.jsonl"):
        with pytest.raises(ReplearnError, match="is a file, not a run"):
            train(compose_cfg("train", FAST + [f"trainer.resume={spec}"]), tmp_path / "new")
    assert snapshot(finished_run) == before and not (tmp_path / "new").exists()


def test_a_checkpoint_write_that_fails_is_one_line_and_keeps_the_previous_one(compose_cfg, finished_run, monkeypatch):
    """torch reports a full disk (or ulimit -f) as a RuntimeError: still one line, the last checkpoint intact."""
    kept = (finished_run / "checkpoint.pt").read_bytes()

    def full(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ReplearnError) as info:
        train(compose_cfg("train", FAST + ["trainer.epochs=3", f"trainer.resume={finished_run}"]), finished_run)
    message = str(info.value)
    assert "\n" not in message and "file size limit (ulimit -f)" in message and f"trainer.resume={finished_run}" in message
    assert (finished_run / "checkpoint.pt").read_bytes() == kept and not list(finished_run.glob(".*.tmp"))
