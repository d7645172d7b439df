"""The soak (tests/soak.py), short: a handful of random kill -9s over a small sweep, under a competing CPU-bound process
switched on and off at random, each launch on 1 or 2 threads; then one rerun equals an uninterrupted sweep.

The full soak (50 kills, auto threads) is run by hand: ``python tests/soak.py --kills 50`` (docs/reliability.md).
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import DATA_DIR, ROOT


@pytest.mark.slow
def test_a_few_kills_under_a_changing_load_then_one_rerun_equal_an_uninterrupted_sweep(tmp_path):
    env = dict(os.environ, REPLEARN_DATA_DIR=str(DATA_DIR), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "soak.py"), "--kills", "4", "--max-delay", "2",
                           "--mixed-threads", "--seed", "3", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kills"] == 4
    assert summary["problems"] == [], summary
    assert summary["competitor_toggles"] >= 1  # the load changed while the runs trained
    assert proc.returncode == 0
