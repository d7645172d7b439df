"""The soak (tests/soak.py): 50 random kill -9s over a small sweep, then one rerun, equal an uninterrupted sweep."""

import json
import subprocess
import sys

import pytest
from helpers import DATA_DIR, ROOT


@pytest.mark.slow
def test_fifty_kills_then_one_rerun_equal_an_uninterrupted_sweep(tmp_path):
    import os

    env = dict(os.environ, REPLEARN_DATA_DIR=str(DATA_DIR), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "soak.py"), "--kills", "50", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kills"] == 50
    assert summary["problems"] == [], summary
    assert summary["resumes"] >= 1  # some kills landed mid-training and the runs continued from checkpoints
    assert proc.returncode == 0
