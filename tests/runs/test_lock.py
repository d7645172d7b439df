"""One owner per run folder: an OS lock, released on any exit (kill -9 included)."""

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import FAST, snapshot

from replearn.errors import ReplearnError
from replearn.runs.layout import LOCK
from replearn.runs.lock import RunLock
from replearn.training.loop import train

HOLD = """
import sys, time
from replearn.runs.lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _hold_in_subprocess(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_owner_is_refused_with_the_holder_named(tmp_path):
    with RunLock(tmp_path), pytest.raises(ReplearnError) as info:
        RunLock(tmp_path).acquire()
    message = str(info.value)
    assert f"pid {os.getpid()}" in message and "in use" in message and "\n" not in message
    with RunLock(tmp_path):  # released on exit from the block
        pass


def test_lock_is_released_by_kill_9(tmp_path):
    proc = _hold_in_subprocess(tmp_path)
    with pytest.raises(ReplearnError, match=f"pid {proc.pid}"):
        RunLock(tmp_path).acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunLock(tmp_path):  # no stale lock to clean up
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_training_into_a_folder_in_use_is_refused_and_changes_nothing(compose_cfg, trained_run, tmp_path):
    run = trained_run(FAST + ["trainer.epochs=1"])
    before = snapshot(run)
    proc = _hold_in_subprocess(run)
    try:
        more = compose_cfg("train", FAST + ["trainer.epochs=2", f"trainer.resume={run}"])
        with pytest.raises(ReplearnError, match=f"in use by pid {proc.pid}"):
            train(more, tmp_path / "other")
        with pytest.raises(ReplearnError, match="in use"):
            train(compose_cfg("train", FAST + ["trainer.epochs=1", "trainer.force=true"]), run)
    finally:
        proc.kill()
        proc.wait()
    assert {k: v for k, v in snapshot(run).items() if k != LOCK} == \
        {k: v for k, v in before.items() if k != LOCK}
    # The lock is free again: the resume now goes through.
    assert train(more, tmp_path / "other")["epochs_completed"] == 2
