"""One ``error: ...`` line and exit status 2, never a traceback: in-process, then each script once end to end."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
from helpers import one_line_error, run_script
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

import replearn.visualize.run as visualize_module
from replearn.cli.check import check_cli
from replearn.cli.errors import discard_unstarted_run_dir, report_errors
from replearn.conf.compose import VALIDATORS, compose
from replearn.errors import ReplearnError
from replearn.runs.layout import HYDRA, LOCK, LOG, METRICS

# Per script: a bad command line and the start of the one line it must print.
BAD = {
    "train": (["depth=three"], "error: depth='three' is invalid"),
    "visualize": (["run=latest", "k=-1"], "error: k=-1 is invalid: must be an integer >= 1"),
    "compare_depth": ([], "error: sweep is missing: pass sweep="),
    "trace": (["image_index=-1"], "error: image_index=-1 is invalid: must be an integer >= 0"),
    "bench": (["suite=nope"], "error: suite='nope' is invalid: choose one of train,"),
}


def _one_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and not out, (out, err)
    return lines[0]


@pytest.mark.parametrize("config_name", BAD)
def test_a_bad_command_line_is_one_line_before_hydra_starts(config_name, capsys, tmp_path):
    argv, expected = BAD[config_name]
    with pytest.raises(SystemExit) as info:
        check_cli(config_name, [*argv, f"hydra.run.dir={tmp_path}/run"])
    assert info.value.code == 2
    assert _one_line(capsys).startswith(expected)
    assert not (tmp_path / "run").exists()


def test_an_unwritable_run_folder_is_one_line(capsys, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and access(path, mode))  # even for root
    with pytest.raises(SystemExit):
        check_cli("train", [f"hydra.run.dir={locked}/run"])
    assert _one_line(capsys) == (f"error: cannot write to {locked} (read-only or no permission); make it writable, "
                                 "or choose another folder with hydra.run.dir=<dir>")


def test_help_and_other_printing_flags_are_left_to_hydra():
    check_cli("train", ["--help"])
    check_cli("train", ["--cfg", "job", "depth=three"])  # Hydra prints; nothing runs


@pytest.mark.parametrize("exc,expected", [
    (ReplearnError("depth=3 is too deep: pass depth=2"), "error: depth=3 is too deep: pass depth=2"),
    (OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoint.pt"),
     "error: cannot use /runs/x/checkpoint.pt: No space left on device; free some disk space, then run the command again"),
    (PermissionError(errno.EACCES, "Permission denied", "/runs/x"),
     "error: cannot use /runs/x: Permission denied; make it writable or choose another folder, then run the command again"),
])
def test_an_error_in_the_task_is_one_line_and_status_2(exc, expected, capsys):
    def task(cfg):
        raise exc

    with pytest.raises(SystemExit) as info:
        report_errors(task)(None)
    assert info.value.code == 2
    assert _one_line(capsys) == expected


def test_ctrl_c_is_status_130(capsys):
    def task(cfg):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        report_errors(task)(None)
    assert info.value.code == 130 and _one_line(capsys) == "interrupted"


def test_a_single_run_is_validated_once(monkeypatch, capsys, tmp_path):
    """check_cli validates; the task (report_errors, then draw_run) does not validate again."""
    calls = []
    monkeypatch.setitem(VALIDATORS, "visualize", lambda cfg: calls.append("check_cli"))
    monkeypatch.setattr(visualize_module, "validate_visualize", lambda cfg: calls.append("visualize_run"))
    argv = [f"run={tmp_path / 'none'}", "device=cpu", "threads=1"]
    check_cli("visualize", argv)
    with pytest.raises(SystemExit):  # draw_run fails at the missing run folder, past any validation
        report_errors(visualize_module.draw_run)(compose("visualize", argv))
    assert calls == ["check_cli"]
    err = capsys.readouterr().err  # (stdout has the thread count)
    assert err.startswith("error: run=") and err.count("\n") == 1
    with pytest.raises(ReplearnError):  # the API call validates, once
        visualize_module.visualize_run(compose("visualize", argv))
    assert calls == ["check_cli", "visualize_run"]


@pytest.fixture
def in_a_sweep_job(tmp_path):
    """Hydra's state as in a job of a train sweep (``-m``) whose folder is ``tmp_path/job``; cleared after."""
    hydra_cfg = compose("train", [], return_hydra_config=True)
    with open_dict(hydra_cfg):
        hydra_cfg.hydra.mode = RunMode.MULTIRUN
        hydra_cfg.hydra.runtime.output_dir = str(tmp_path / "job")
    HydraConfig.instance().set_config(hydra_cfg)
    yield tmp_path / "job"
    HydraConfig.instance().cfg = None


def test_a_sweep_job_is_validated_in_the_job_and_the_sweep_goes_on(in_a_sweep_job, capsys, monkeypatch):
    """The sweeper's params are not composed by check_cli: each job checks its own config, and a bad one
    prints its line, leaves no folder behind and returns, so the next job runs."""
    monkeypatch.setattr(logging, "shutdown", lambda: None)
    (in_a_sweep_job / HYDRA).mkdir(parents=True)
    ran = []
    report_errors(ran.append)(compose("train", ["depth=0"]))  # no SystemExit
    assert ran == [] and not in_a_sweep_job.exists()
    assert _one_line(capsys) == "error: depth=0 is invalid: must be an integer >= 1"


def _run_folder(tmp_path, *names):
    folder = tmp_path / "run"
    (folder / HYDRA).mkdir(parents=True)
    for name in names:
        (folder / name).write_text("")
    return folder


def test_the_folder_of_a_run_that_never_started_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(logging, "shutdown", lambda: None)  # it closes the job's log file; pytest's logging stays
    folder = _run_folder(tmp_path, LOCK, LOG)
    assert discard_unstarted_run_dir(folder) and not folder.exists()


def test_a_run_folder_with_files_of_its_own_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(logging, "shutdown", lambda: None)
    folder = _run_folder(tmp_path, LOG, METRICS)
    assert not discard_unstarted_run_dir(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([HYDRA, LOG, METRICS])


# Per script: a command line that passes check_cli and fails in the Hydra job, at a path that does not exist
# (bench has no such option: its line comes from check_cli).
IN_THE_JOB = {"train": "trainer.resume", "visualize": "run", "compare_depth": "sweep", "trace": "run"}


@pytest.mark.parametrize("script", ["train.py", "visualize.py", "compare_depth.py", "trace.py", "bench.py"])
def test_each_script_prints_its_one_line(script, tmp_path):
    """The one subprocess per script: check_cli, Hydra and report_errors wired together, end to end."""
    config_name = script.removesuffix(".py")
    missing = tmp_path / "none"
    argv, expected = ([f"{IN_THE_JOB[config_name]}={missing}"], str(missing)) if config_name in IN_THE_JOB else BAD[config_name]
    line = one_line_error(run_script(script, *argv, f"hydra.run.dir={tmp_path}/run"))
    assert line.startswith("error: ") and expected in line
    if config_name == "train":  # the folder Hydra made for a run that never started is removed
        assert not (tmp_path / "run").exists()
