"""Thread policy: trainer.threads=N wins; auto (0) follows what other processes leave free."""

import os
import subprocess
import sys
import time

import pytest
import torch

from replearn import device
from replearn.device import CpuMeter, ThreadPolicy, auto_threads


@pytest.mark.parametrize("others, cores, most, expected", [
    (0.0, 2, 2, 2), (0.4, 2, 2, 2), (0.6, 2, 2, 1), (1.0, 2, 2, 1), (5.0, 2, 2, 1),
    (0.0, 8, 4, 4), (3.0, 8, 8, 5),
])
def test_auto_threads(others, cores, most, expected):
    assert auto_threads(others, cores, most) == expected


def test_requested_threads_win(monkeypatch):
    monkeypatch.setattr(device, "other_load", lambda *a: pytest.fail("an explicit count must not sample the machine"))
    policy = ThreadPolicy(1)
    assert torch.get_num_threads() == 1 and policy.describe() == "1 torch thread (trainer.threads=1)"
    assert policy.update() is None  # never changed by the machine's load


def test_auto_follows_the_load_with_hysteresis(monkeypatch):
    monkeypatch.setattr(device, "other_load", lambda *a: 1.2)
    monkeypatch.setattr(device, "cpu_cores", lambda: [0, 1])
    monkeypatch.setattr(device, "_DEFAULT_THREADS", 2)
    policy = ThreadPolicy(0)
    assert policy.threads == 1 and torch.get_num_threads() == 1
    assert "other processes use 1.2 of 2 cores" in policy.describe()

    readings = iter([0.4, 0.1, 0.9])
    monkeypatch.setattr(policy.meter, "others", lambda: next(readings))
    assert policy.update() is None and policy.threads == 1  # 0.4 is not clearly idle: stay
    assert policy.update().startswith("threads 1 -> 2") and torch.get_num_threads() == 2
    assert policy.update().startswith("threads 2 -> 1") and torch.get_num_threads() == 1


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_cpu_meter_sees_a_busy_process():
    meter = CpuMeter()
    busy = subprocess.Popen([sys.executable, "-c", "import time; t = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        time.sleep(1.0)
        others = meter.others()
    finally:
        busy.kill()
        busy.wait()
    # The busy loop alone is about one core (more when other jobs share the machine); idle reads ~0.
    assert others is not None and others >= 0.5


def test_visualize_takes_its_threads_like_training(compose_cfg, tmp_path, capsys):
    """visualize.py threads=N sets torch's threads and says so; a negative count is one line."""
    from replearn.errors import ReplearnError
    from replearn.visualize.run import visualize_run

    cfg = compose_cfg("visualize", [f"run={tmp_path / 'missing'}", "threads=1"])
    with pytest.raises(ReplearnError):  # the run does not exist: the threads are set before it is loaded
        visualize_run(cfg)
    assert torch.get_num_threads() == 1
    assert "1 torch thread (threads=1)" in capsys.readouterr().out
    bad = compose_cfg("visualize", ["run=x", "threads=-1"])
    with pytest.raises(ReplearnError, match="threads=-1 is invalid"):
        visualize_run(bad)
