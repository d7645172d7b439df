"""compare_depth averages only runs of one sweep, and a torn metrics row neither hides nor miscounts an epoch
(issue 19, section 7)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml
from helpers import FAST, one_line_error, run_script, snapshot
from omegaconf import OmegaConf

from replearn.errors import ReplearnError
from replearn.report.build import compare_depth
from replearn.report.collect import collect_runs, run_settings


def fake_run(folder, depth: int, seed: int = 0, data: str = "mnist", model: str = "mlp", lr: float = 0.002,
             residual: bool = False, threads: int = 1) -> None:
    folder.mkdir(parents=True)
    cfg = {"model": {"name": model, "depth": depth, "width": 8, "norm": "none", "residual": residual},
           "data": {"name": data, "root": str(folder.parent)}, "optim": {"lr": lr},
           "trainer": {"epochs": 2, "threads": threads, "progress": False}, "depth": depth, "seed": seed}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.9}) + "\n")
    (folder / "final.json").write_text(json.dumps({"status": "ok", "test_acc": 0.9, "epochs_completed": 1}))


def report(sweep):
    return compare_depth(OmegaConf.create({"sweep": str(sweep), "root": str(sweep), "cross_cka_images": 0,
                                           "progress": False}))


def test_one_sweep_with_depths_seeds_and_variants_is_pooled(tmp_path):
    for depth in (1, 2):
        for seed in (0, 1):
            fake_run(tmp_path / f"depth={depth},seed={seed}", depth, seed, threads=seed + 1)
            fake_run(tmp_path / f"depth={depth},seed={seed},variant=residual", depth, seed, residual=True)
    assert len(collect_runs(tmp_path)) == 8
    assert report(tmp_path).is_file()


@pytest.mark.parametrize("other, key", [
    ({"data": "synthetic"}, "data.name is 'mnist' in a but 'synthetic' in b"),
    ({"model": "cnn"}, "model.name is 'mlp' in a but 'cnn' in b"),
    ({"lr": 0.1}, "optim.lr is 0.002 in a but 0.1 in b"),
])
def test_unrelated_runs_are_not_averaged_as_seeds(tmp_path, other, key):
    fake_run(tmp_path / "a", 2, 0)
    fake_run(tmp_path / "b", 2, 1, **other)
    before = snapshot(tmp_path)
    with pytest.raises(ReplearnError, match=rf"holds runs that are not one sweep: {key}") as info:
        report(tmp_path)
    assert "\n" not in str(info.value) and snapshot(tmp_path) == before


def test_the_same_run_twice_is_not_two_seeds(tmp_path):
    fake_run(tmp_path / "a", 2, 0)
    shutil.copytree(tmp_path / "a", tmp_path / "copy of a")
    with pytest.raises(ReplearnError, match=r"two runs of variant=plain depth=2 seed=0 \(a and copy of a\)"):
        collect_runs(tmp_path)


def test_settings_leave_out_what_a_sweep_varies():
    cfg = {"model": {"name": "mlp", "depth": 3, "norm": "batchnorm", "residual": True, "init": "he", "width": 8},
           "data": {"name": "mnist", "root": "/x", "download": True}, "trainer": {"threads": 2, "epochs": 2}}
    assert run_settings(cfg) == {"model.name": "mlp", "model.width": 8, "data.name": "mnist", "trainer.epochs": 2,
                                 "optim": None}


@pytest.mark.slow
def test_outputs_of_unrelated_runs_refused_by_the_script(tmp_path):
    fake_run(tmp_path / "a", 2, 0)
    fake_run(tmp_path / "b", 3, 0, data="synthetic")
    assert "not one sweep" in one_line_error(run_script("compare_depth.py", f"sweep={tmp_path}"))


def test_a_torn_metrics_row_is_counted_in_the_warning_and_not_in_the_epochs(trained_run, compose_cfg, capsys):
    from replearn.training.loop import train

    run = trained_run([*FAST, "trainer.epochs=2"])
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0][:25], *lines[1:]]) + "\n")  # epoch 1's row torn
    capsys.readouterr()
    final = train(compose_cfg("train", [*FAST, "trainer.epochs=3", f"trainer.resume={run}"]), run)
    err = capsys.readouterr().err
    assert "dropped 1 row of" in err and "metrics.jsonl" in err
    assert final["epochs_completed"] == 3  # the last epoch trained, not the rows left (2)
    records = collect_runs(run.parent)
    assert [r.final["epochs_completed"] for r in records] == [3]
    report(run.parent)
    with open(run.parent / "depth_report" / "runs.csv", newline="") as handle:
        assert [row["epochs"] for row in csv.DictReader(handle)] == ["3"]
