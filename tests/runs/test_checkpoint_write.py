"""A checkpoint write that the file system refuses (full disk, ``ulimit -f``): one line, the previous checkpoint intact."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from helpers import DATA_DIR, FAST, ROOT, one_line_error


@pytest.mark.slow
def test_a_file_size_limit_during_the_checkpoint_write_is_one_line(trained_run, tmp_path):
    run = trained_run(FAST + ["trainer.epochs=1"])
    kept = (run / "checkpoint.pt").read_bytes()
    limit = len(kept) // 3  # the other files of a resume fit; the checkpoint does not

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), f"trainer.resume={run}", "trainer.epochs=2"],
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "REPLEARN_DATA_DIR": str(DATA_DIR), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=300, preexec_fn=limited)
    line = one_line_error(proc)
    assert "file size limit (ulimit -f)" in line and f"trainer.resume={run}" in line
    assert (run / "checkpoint.pt").read_bytes() == kept and not list(run.glob(".*.tmp"))
