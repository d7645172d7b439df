"""Helpers the tests import (``from helpers import ...``; tests/ is on pytest's pythonpath): paths and scripts."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("REPLEARN_DATA_DIR", ROOT.parent / "shared" / "datasets")).resolve()

# A tiny, fast training config: synthetic data, two small layers, one thread, no progress bar.
FAST = ["data=synthetic", "data.num_train=600", "data.num_test=200", "data.val_size=100",
        "trainer.batch_size=64", "trainer.progress=false", "trainer.threads=1", "depth=2", "model.width=32"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash (to prove a refusal touched nothing)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_script(script: str, *overrides: str, timeout: float = 300, cwd: Path = ROOT):
    """Run scripts/<script> in a subprocess; return the CompletedProcess."""
    import subprocess

    env = dict(os.environ, PYTHONUNBUFFERED="1", REPLEARN_DATA_DIR=str(DATA_DIR))
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
