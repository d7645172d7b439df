"""Helpers the tests import (``from helpers import ...``; tests/ is on pytest's pythonpath): paths, settings, scripts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("REPLEARN_DATA_DIR", ROOT.parent / "shared" / "datasets")).resolve()

# A training run in a second or two with any model: synthetic data, small splits, no progress bar, and one
# thread (auto threads follow the machine's load, and float sums differ between 1 and 2 threads, which
# would make bit-for-bit comparisons depend on what else is running).
FAST_ANY_MODEL = ["data=synthetic", "data.num_train=600", "data.num_test=200", "data.val_size=100",
                  "trainer.batch_size=64", "trainer.progress=false", "trainer.threads=1"]
TINY_MLP = ["depth=2", "model.width=32"]
# The usual tiny run: FAST_ANY_MODEL with a two-layer MLP of width 32.
FAST = [*FAST_ANY_MODEL, *TINY_MLP]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash (to prove a refusal touched nothing)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_script(script: str, *overrides: str, timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run scripts/<script> in a subprocess; return the CompletedProcess.

    A subprocess costs seconds of start-up: keep one per script as its end-to-end check and test
    everything else in-process.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", REPLEARN_DATA_DIR=str(DATA_DIR))
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The script's single ``error: ...`` line; fail unless it exited 2 with exactly that and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def interrupt_after(monkeypatch, epoch: int):
    """Make training stop (KeyboardInterrupt) right after the checkpoint of ``epoch`` is written, as a kill
    would; returns a function that puts the real checkpoint writer back (to resume)."""
    import replearn.training.loop as loop

    real = loop.save_checkpoint

    def save_then_stop(state, path):
        real(state, path)
        if state["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    return lambda: monkeypatch.setattr(loop, "save_checkpoint", real)
