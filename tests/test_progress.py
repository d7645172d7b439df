"""Progress output: a live bar only on a terminal; piped output gets plain lines, one a minute at most."""

from __future__ import annotations

from helpers import FAST, run_script

from replearn import progress as progress_module
from replearn.progress import PlainProgress, progress


def test_off_a_terminal_the_wrapper_is_plain(monkeypatch):
    monkeypatch.setattr(progress_module, "interactive", lambda: False)
    assert isinstance(progress(range(3), desc="x"), PlainProgress)
    monkeypatch.setattr(progress_module, "interactive", lambda: True)
    assert not isinstance(progress(range(3), desc="x"), PlainProgress)


def test_plain_progress_is_silent_for_short_loops_and_writes_lines_for_long_ones(capsys):
    assert list(PlainProgress(range(5), desc="short")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""
    bar = PlainProgress(range(4), desc="long", every_s=0.0)  # every update is "a minute later"
    bar.set_postfix(loss="0.5")
    assert list(bar) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("long: 4/4 (100%) in ") and lines[-1].endswith("loss=0.5")
    assert "\r" not in "".join(lines)


def test_disabled_plain_progress_prints_nothing(capsys):
    bar = PlainProgress(total=3, desc="off", enabled=False, every_s=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    assert bar.n == 3 and capsys.readouterr().err == ""


def test_piped_training_with_progress_on_writes_no_carriage_returns(tmp_path):
    proc = run_script("train.py", *FAST, "trainer.progress=true", "trainer.epochs=3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert output.count("\r") == 0, f"{output.count(chr(13))} carriage returns in piped output"
    assert sum("epoch" in line for line in output.splitlines()) >= 3  # the per-epoch lines are still there
