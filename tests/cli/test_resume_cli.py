"""Resume trusts the run's checkpoint, never ``.hydra/overrides.yaml``; a refused command changes nothing (issue 19, 2 and 8).

In-process, a command is what ``scripts/train.py`` does: :func:`check_cli`'s argv rewriting, then the config Hydra
composes from it, trained into the folder Hydra would use. The script itself runs once end to end (slow), to show
what Hydra writes and where the log lines go.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import DATA_DIR, FAST, ROOT, run_script, snapshot

from replearn.cli.check import check_cli, keep_hydra_record, quote_path_overrides, with_resumed_overrides
from replearn.conf.compose import compose
from replearn.errors import ReplearnError
from replearn.runs.layout import read_resumes
from replearn.runs.lock import RunLock
from replearn.training.loop import train
from replearn.training.own_config import format_value, own_config


def _resume(run: Path, *typed: str) -> dict:
    """``python scripts/train.py trainer.resume=<run> <typed>``, in-process."""
    argv = with_resumed_overrides(quote_path_overrides([f"trainer.resume={run}", *typed]))
    assert f"hydra.run.dir={run}" in " ".join(argv).replace("'", "") and "hydra.output_subdir=null" in argv
    return train(compose("train", [a for a in argv if not a.startswith("hydra.")]), run)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def run(trained_run):
    """A finished 1-epoch run with a Hydra record of its first start (as the script leaves it)."""
    folder = trained_run(FAST + ["trainer.epochs=1"])
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(FAST + ["trainer.epochs=1"]))
    return folder


def test_a_refused_rerun_writes_no_hydra_record_and_the_next_resume_works(run, capsys):
    argv = [*FAST, "depth=3", f"hydra.run.dir={run}"]
    assert keep_hydra_record(argv) == [*argv, "hydra.output_subdir=null"]  # Hydra writes nothing into it
    before = snapshot(run)
    with pytest.raises(ReplearnError, match="already holds a finished run"):
        train(compose("train", [*FAST, "depth=3"]), run)
    assert snapshot(run) == before
    # Even a record another version rewrote does not matter: the resume reads the checkpoint.
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*FAST, "depth=3"]))
    final = _resume(run, "trainer.epochs=3")
    assert final["status"] == "ok" and final["epochs_completed"] == 3 and final["depth"] == 2


def test_a_lock_refused_second_process_changes_nothing(run):
    (run / "final.json").unlink()  # still training: epoch 1 saved
    before = snapshot(run)
    with RunLock(run):  # the process that trains it
        argv = keep_hydra_record([*FAST, "optim.lr=0.1", "trainer.epochs=2", f"hydra.run.dir={run}"])
        assert argv[-1] == "hydra.output_subdir=null"
        with pytest.raises(ReplearnError, match="is in use by"):
            train(compose("train", [a for a in argv if not a.startswith("hydra.")]), run)
    assert {k: v for k, v in snapshot(run).items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}
    assert _resume(run, "trainer.epochs=2")["epochs_completed"] == 2


def test_a_changed_lr_persists_into_the_next_resume(run):
    _resume(run, "trainer.epochs=2", "optim.lr=1e-4")
    _resume(run, "trainer.epochs=3")
    resumes = read_resumes(run)
    assert resumes[0]["changes"]["optim.lr"] == [0.002, 0.0001]
    assert "optim.lr" not in resumes[1]["changes"]  # not quietly back to 0.002
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 0.0001


def test_a_resume_killed_before_its_first_epoch_keeps_its_changes(run):
    """The row a resume writes before it trains is part of the run (its checkpoint has no epoch of it yet)."""
    with open(run / "resumes.jsonl", "a") as handle:
        handle.write(json.dumps({"after_epoch": 1, "changes": {"optim.lr": [0.002, 0.0001], "trainer.epochs": [1, 3]}})
                     + "\n")
    own, epoch = own_config(run)
    assert epoch == 1 and own["optim.lr"] == 0.0001 and own["trainer.epochs"] == 3


def test_the_divergence_advice_typed_word_for_word_keeps_the_diverged_legs_epochs(run):
    with pytest.raises(ReplearnError) as info:
        _resume(run, "trainer.epochs=3", "trainer.schedule=none", "optim.lr=1")
    advice = str(info.value).split("(python scripts/train.py ", 1)[1].split(")", 1)[0].split()
    assert advice == [f"trainer.resume={run}", "optim.lr=0.1"]
    final = _resume(run, *advice[1:])
    assert final["status"] == "ok" and final["epochs_completed"] == 3
    assert [r["lr"] for r in _rows(run)][1:] == [0.1, 0.1]  # the diverged leg's schedule=none is kept too


def test_the_divergence_advice_names_only_training_options(run):
    with pytest.raises(ReplearnError) as info:
        _resume(run, "trainer.epochs=2", "trainer.schedule=none", "optim.lr=1")
    message = str(info.value)
    command = message.split("(python scripts/train.py ", 1)[1].split(")", 1)[0].split()
    compose("train", command + ["model.norm=batchnorm"])  # every option it names is a training option
    assert "visualize" not in message


def test_a_folder_copied_without_hydra_resumes_with_its_own_settings(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".hydra"))
    final = _resume(copy, "trainer.epochs=2")
    assert final["epochs_completed"] == 2 and final["depth"] == 2
    assert yaml.safe_load((copy / "config.yaml").read_text())["data"]["name"] == "synthetic"


def test_a_setting_removed_since_does_not_block_the_resume(run, capsys):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["config"]["trainer"]["old_option"] = 3  # a key a later version no longer has
    torch.save(state, run / "checkpoint.pt")
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["+trainer.old_option=3"]))
    final = _resume(run, "trainer.epochs=2")
    assert final["epochs_completed"] == 2
    assert "left out: trainer.old_option" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["plain", "it's", "back\\slash\\", "x${y}", "a=b,c", "", None, True, 1e-5, float("inf"),
                                   [1, "two", None], {"a": 1}])
def test_settings_are_written_as_overrides_that_read_back_the_same(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from replearn.training.resume import flatten

    line = f"trainer.resume={format_value(value)}"
    OverridesParser.create().parse_override(line)  # parses
    if isinstance(value, str):
        assert compose("train", [line]).trainer.resume == value  # composes to the same string
    else:
        assert flatten({"v": OverridesParser.create().parse_override(line).value()}) == flatten({"v": value}) or \
            value != value  # nan


@pytest.mark.parametrize("spec", ["final.json", "config.yaml", "notes.txt"])
def test_a_file_is_not_a_run(run, spec, capsys):
    (run / "notes.txt").write_text("mine")
    (run / "checkpoint.pt").unlink()  # the case that used to train afresh in the folder
    before = snapshot(run)
    with pytest.raises(SystemExit) as info:
        check_cli("train", [f"trainer.resume={run / spec}"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a file, not a run" in err
    with pytest.raises(ReplearnError, match="is a file, not a run"):
        train(compose("train", [*FAST, f"trainer.resume={run / spec}"]), run / "elsewhere")
    assert snapshot(run) == before


def test_force_with_resume_is_refused_in_one_line(run, capsys):
    before = snapshot(run)
    with pytest.raises(SystemExit):
        check_cli("train", [f"trainer.resume={run}", "trainer.force=true"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: trainer.force=true starts a run over and trainer.resume continues it") and "\n" not in err
    with pytest.raises(ReplearnError, match="pass one of them"):
        train(compose("train", [*FAST, "trainer.force=true", f"trainer.resume={run}"]), run)
    assert snapshot(run) == before


# ---------------------------------------------------------------- the script, end to end

@pytest.mark.slow
def test_the_script_resumes_in_the_runs_own_folder_and_refusals_touch_nothing(tmp_path):
    run = tmp_path / "run"
    assert run_script("train.py", *FAST, "trainer.epochs=1", f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    hydra_record = snapshot(run / ".hydra")
    before = snapshot(run)
    refused = run_script("train.py", *FAST, "depth=3", f"hydra.run.dir={run}", cwd=tmp_path)
    assert refused.returncode == 2 and "already holds a finished run" in refused.stderr
    assert snapshot(run) == before
    resumed = run_script("train.py", f"trainer.resume={run}", "trainer.epochs=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no stray outputs/<date>/<time>_... folder
    assert snapshot(run / ".hydra") == hydra_record
    log = (run / "train.log").read_text()
    assert "epoch 1/1" in log and "epoch 2/2" in log  # the resumed epochs are in the run's own log


@pytest.mark.slow
def test_sigterm_stops_with_one_line_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, REPLEARN_DATA_DIR=str(DATA_DIR), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *FAST, "data.num_train=3000",
                             "trainer.epochs=200", f"hydra.run.dir={run}"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 143 and len(lines) == 1, err
    assert lines[0].startswith("stopped by SIGTERM: stopped during epoch") and f"trainer.resume={run}" in lines[0]
    assert "Traceback" not in err
    epoch = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    assert epoch >= 1 and not list(run.glob(".*.tmp"))
    final = train(compose("train", [*FAST, "data.num_train=3000", f"trainer.epochs={epoch + 1}",
                                    f"trainer.resume={run}"]), run)
    assert final["epochs_completed"] == epoch + 1
