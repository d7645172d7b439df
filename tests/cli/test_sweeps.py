"""Sweeps on the command line (N/M done, ETA, per-job prefixes, the single-run warning) and run=latest."""

import json
import os
import time

import pytest
from helpers import run_script

from replearn.cli.sweeps import count_jobs, format_seconds, progress_line, single_run_warning
from replearn.errors import ReplearnError
from replearn.runs.load import resolve_run_dir


def _with_task(cfg, task):
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.hydra.overrides.task = task  # as Hydra records a multirun's command line
    return cfg


def test_count_jobs_follows_the_sweep_and_the_command_line(compose_cfg):
    sweep = compose_cfg("train", ["experiment=depth_mlp"], return_hydra_config=True)
    assert count_jobs(sweep) == 3 * 8 * 3
    assert count_jobs(_with_task(sweep, ["experiment=depth_mlp", "depth=1,2", "seed=0"])) == 3 * 2 * 1
    plain = compose_cfg("train", [], return_hydra_config=True)
    assert count_jobs(_with_task(plain, ["depth=1,2,3", "seed=0,1", "model=mlp"])) == 6


def test_single_run_warning_only_for_sweep_configs(compose_cfg):
    warning = single_run_warning(compose_cfg("train", ["experiment=depth_mlp"], return_hydra_config=True))
    assert warning.startswith("warning: experiment=depth_mlp is a sweep") and "-m experiment=depth_mlp" in warning
    assert single_run_warning(compose_cfg("train", ["depth=2"], return_hydra_config=True)) is None


def test_progress_line():
    assert format_seconds(95) == "1m35s" and format_seconds(4000) == "1h06m" and format_seconds(7) == "7s"
    assert progress_line(5, 20, 100.0) == "[5/20 done, 1m40s elapsed, ETA 5m00s]"
    assert progress_line(0, 20, 3.0).endswith("ETA ?]")


def test_sweep_prints_prefixed_lines_and_progress(tmp_path):
    proc = run_script("train.py", "-m", "experiment=depth_smoke", "analysis.enabled=false",
                      f"hydra.sweep.dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "sweep of 2 jobs -> " in proc.stdout
    for depth in (1, 2):
        prefix = f"[analysis.enabled=False,depth={depth},variant=plain] "
        assert any(line.startswith(prefix + "epoch 1/1") for line in lines), proc.stdout[-2000:]
    done = [line for line in lines if " done, " in line]
    assert [line.split("] [")[1].split(" done")[0] for line in done] == ["1/2", "2/2"]
    assert done[-1].endswith("ETA 0s] finished")


def test_experiment_without_m_warns(tmp_path):
    proc = run_script("train.py", "experiment=depth_smoke", "analysis.enabled=false", "trainer.epochs=1",
                      f"hydra.run.dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: experiment=depth_smoke is a sweep" in proc.stderr and "add -m" in proc.stderr


def _fake_run(folder, status=None, age=0.0):
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"")
    if status:
        (folder / "final.json").write_text(json.dumps({"status": status}))
    stamp = time.time() - age
    for name in ("checkpoint.pt", "final.json"):
        if (folder / name).exists():
            os.utime(folder / name, (stamp, stamp))


def test_latest_skips_unfinished_runs_and_filters(tmp_path):
    _fake_run(tmp_path / "day" / "10-00-00_cnn_d4", "ok", age=300)
    _fake_run(tmp_path / "day" / "11-00-00_mlp_d5", "ok", age=200)
    _fake_run(tmp_path / "day" / "12-00-00_mlp_d3", None, age=0)  # still training
    _fake_run(tmp_path / "day" / "12-30-00_mlp_d9", "diverged", age=0)
    assert resolve_run_dir("latest", root=tmp_path).name == "11-00-00_mlp_d5"
    assert resolve_run_dir("latest:cnn", root=tmp_path).name == "10-00-00_cnn_d4"
    with pytest.raises(ReplearnError, match=r"run=latest:d3 found no finished run .*\(1 in progress, stopped or diverged"):
        resolve_run_dir("latest:d3", root=tmp_path)
    with pytest.raises(ReplearnError, match=r"run=latest:resnet found no run matching 'resnet'"):
        resolve_run_dir("latest:resnet", root=tmp_path)
