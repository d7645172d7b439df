"""visualize.py never exits 0 with a misleading page and never loses the last one: a run that is not finished is
said so on the page, a failed visualize leaves the previous page whole, and options that cannot fit are refused
(issue 19, sections 4, 6 and 7)."""

from __future__ import annotations

import json
import os

import pytest
from helpers import FAST, one_line_error, run_script, snapshot

import replearn.guards as guards
from replearn.errors import ReplearnError
from replearn.runs.lock import RunLock
from replearn.visualize import run as visualize_module
from replearn.visualize.run import visualize_run
from replearn.visualize.staging import STAGING_PREFIX, unfinished

pytestmark = pytest.mark.usefixtures("one_thread")

VIZ = ["units=3", "k=3", "steps=4", "embedding_samples=40", "num_inputs=2", "progress=false", "device=cpu",
       "dissect=false", "layers=[blocks.0,head]", "threads=1"]


@pytest.fixture
def run(trained_run):
    return trained_run([*FAST, "trainer.epochs=2"])


def _finish_at(run, epochs: int) -> None:
    final = json.loads((run / "final.json").read_text())
    (run / "final.json").write_text(json.dumps({**final, "epochs_completed": epochs}))


def test_a_finished_run_is_not_flagged(run):
    assert unfinished(run) is None


def test_a_run_being_trained_is_flagged(run):
    with RunLock(run):  # what a training process holds for as long as it runs
        note = unfinished(run)
    assert note is not None and f"being trained now (by pid {os.getpid()})" in note and "epoch 2" in note
    assert unfinished(run) is None  # released


def test_a_run_without_final_json_is_flagged(run):
    (run / "final.json").unlink()
    assert "has no final.json" in unfinished(run)


def test_a_checkpoint_newer_than_final_json_is_flagged(run):
    _finish_at(run, 1)  # as after a resume that was stopped: final.json of epoch 1, checkpoint of epoch 2
    assert "final.json describes epoch 1 but the checkpoint is from epoch 2" in unfinished(run)


def test_the_page_of_an_unfinished_run_says_so(run, compose_cfg, capsys):
    _finish_at(run, 1)
    page = visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ]))
    text = page.read_text()
    assert "NOT FINISHED" in text and "status: ok" not in text
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("warning: ") and "epoch 2" in err[0]


def test_a_failed_visualize_leaves_the_previous_page_whole(run, compose_cfg, monkeypatch):
    page = visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ]))
    assert "status: ok" in page.read_text()
    (page.parent / "notes.txt").write_text("mine")
    before = snapshot(page.parent)

    def fail(*args, **kwargs):
        raise ReplearnError("act-max on head diverged")

    monkeypatch.setattr(visualize_module, "write_actmax_outputs", fail)  # late: after every layer was drawn
    with pytest.raises(ReplearnError, match="diverged"):
        visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ, "layers=[head]"]))
    assert snapshot(page.parent) == before
    assert not list(run.glob(f"{STAGING_PREFIX}*"))  # nothing left beside it


def test_the_new_page_replaces_the_old_one_only_when_complete(run, compose_cfg):
    page = visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ]))
    assert (page.parent / "blocks-0_topk.png").is_file()
    dead = run / f"{STAGING_PREFIX}999999999"  # left by a visualize killed with -9 (no such process)
    dead.mkdir()
    (dead / "index.html").write_text("half")
    again = visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ, "layers=[head]"]))
    assert again == page and not dead.exists()
    assert not (page.parent / "blocks-0_topk.png").exists()  # the old page's own figures went with it
    assert (page.parent / "head_topk.png").is_file()


@pytest.mark.parametrize("override, message", [
    ("prior_weights=[inf]", r"prior_weights=\[inf\] is invalid: use a non-empty list of finite numbers"),
    ("prior_weights=[nan]", r"finite numbers"),
])
def test_non_finite_prior_weights_are_refused(run, compose_cfg, override, message):
    with pytest.raises(ReplearnError, match=message):
        visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ, override]))


@pytest.mark.parametrize("override, message", [
    ("k=1000000000", r"k=1000000000 .* need about .* but only 20 MB is free; use k<="),
    ("steps=1000000000", r"steps=1000000000 would take about .* days of act-max"),
])
def test_options_that_cannot_fit_are_refused_before_the_page_is_touched(run, compose_cfg, monkeypatch, override,
                                                                       message):
    page = visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ]))
    before = snapshot(page.parent)
    monkeypatch.setattr(guards, "available_bytes", lambda device_type="cpu": 20_000_000)
    monkeypatch.delenv(guards.FORCE_ENV, raising=False)
    overrides = [f"run={run}", *[o for o in VIZ if not o.startswith(override.split("=")[0] + "=")], override]
    with pytest.raises(ReplearnError, match=message) as info:
        visualize_run(compose_cfg("visualize", overrides))
    assert "force_resources=true" in str(info.value) and "\n" not in str(info.value)
    assert snapshot(page.parent) == before


@pytest.mark.parametrize("config, argv, message", [
    ("visualize", ["run=a,b"], "run=a,b names several paths; pass one"),
    ("trace", ["network=a.yaml,b.yaml"], "network=a.yaml,b.yaml names several paths"),
    ("visualize", ["run=x", "k=3,4"], "k=3,4 gives several values to one run; add -m"),
])
def test_several_values_without_multirun_give_one_line(config, argv, message, capsys):
    from replearn.cli.check import check_cli  # lazy: the library never imports the command line; this test does

    with pytest.raises(SystemExit) as exit_info:
        check_cli(config, argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {message}")
    check_cli(config, ["-m", *argv])  # with -m it is a sweep: no complaint


@pytest.mark.slow
def test_script_one_lines(run):
    # Several run folders without -m: one line, not Hydra's six.
    assert "run=a,b names several paths" in one_line_error(run_script("visualize.py", "run=a,b"))
    assert "finite numbers" in one_line_error(run_script("visualize.py", f"run={run}", "prior_weights=[inf]"))
    # Dissecting an MLP runs torch's forward-mode AD, whose first use printed torch.jit's FutureWarning.
    proc = run_script("visualize.py", f"run={run}", *[o for o in VIZ if o != "dissect=false"], "dissect_images=60")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FutureWarning" not in proc.stderr and "torch.jit" not in proc.stderr


def test_a_model_with_more_outputs_than_classes_is_refused_in_one_line(trained_run, compose_cfg):
    """Runs trained before the models followed data.num_classes (10 logits for 8 shapes classes)."""
    run = trained_run([*FAST, "trainer.epochs=1", "model.num_classes=12"])
    with pytest.raises(ReplearnError, match=r"has 12 outputs but its data \(synthetic\) has 10 classes") as info:
        visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ]))
    assert "\n" not in str(info.value) and not (run / "viz").exists()
