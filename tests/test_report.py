"""Depth report: aggregation over seeds, failed/diverged/missing runs, and the end-to-end sweep."""

import csv
import json
import math

import pytest
import yaml
from omegaconf import OmegaConf

from replearn.report.build import accuracy_table, compare_depth
from replearn.report.collect import collect_runs, variant_name
from replearn.report.stats import mean_ci95

from conftest import run_script


def _fake_run(folder, depth, seed, status="ok", test_acc=0.9, residual=False, final=True):
    folder.mkdir(parents=True)
    model = {"name": "mlp", "depth": depth, "width": 8, "norm": "none", "residual": residual}
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": model, "depth": depth, "seed": seed}))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": test_acc, "train_acc": test_acc}) + "\n")
    if final:
        payload = {"status": status, "test_acc": test_acc if status == "ok" else None, "epochs_completed": 1}
        if status == "diverged":
            payload["error"] = "loss became nan at epoch 1, step 3"
        (folder / "final.json").write_text(json.dumps(payload))


def test_mean_ci95_matches_t_interval():
    mean, ci = mean_ci95([0.9, 0.92, 0.94])
    assert mean == pytest.approx(0.92)
    assert ci == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_ci95([0.5])[1]) and math.isnan(mean_ci95([])[0])


def test_collect_keeps_failed_diverged_and_missing_runs(tmp_path):
    _fake_run(tmp_path / "depth=1,seed=0", 1, 0, test_acc=0.90)
    _fake_run(tmp_path / "depth=1,seed=1", 1, 1, test_acc=0.94)
    _fake_run(tmp_path / "depth=2,seed=0", 2, 0, status="diverged")
    _fake_run(tmp_path / "depth=2,seed=1", 2, 1, final=False)  # killed before it finished
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"sweeper": {"params": {"depth": "1,2", "seed": "0,1,2"}}, "overrides": {"task": []}}}))
    records = collect_runs(tmp_path)
    statuses = {(r.depth, r.seed): r.status for r in records}
    assert statuses == {(1, 0): "ok", (1, 1): "ok", (1, 2): "missing",
                        (2, 0): "diverged", (2, 1): "failed", (2, 2): "missing"}
    table = {row["depth"]: row for row in accuracy_table(records)}
    assert table[1]["mean"] == pytest.approx(0.92) and table[1]["ok"] == 2 and table[1]["missing"] == 1
    assert table[2]["ok"] == 0 and table[2]["diverged"] == 1 and table[2]["failed"] == 1 and math.isnan(table[2]["mean"])


def test_report_lists_every_run_even_without_analysis(tmp_path):
    _fake_run(tmp_path / "a", 1, 0)
    _fake_run(tmp_path / "b", 3, 0, status="diverged", residual=True)
    cfg = OmegaConf.create({"sweep": str(tmp_path), "root": str(tmp_path), "cross_cka_images": 0, "progress": False})
    index = compare_depth(cfg)
    rows = list(csv.DictReader(open(tmp_path / "depth_report" / "summary.csv")))
    assert {(r["variant"], r["status"]) for r in rows} == {("plain", "ok"), ("residual", "diverged")}
    text = (tmp_path / "depth_report" / "summary.md").read_text()
    assert "residual depth 3 seed 0: **diverged** loss became nan" in text
    assert "accuracy_vs_depth.png" in index.read_text()


def test_variant_names():
    assert variant_name({"norm": "none", "residual": False}) == "plain"
    assert variant_name({"norm": "batchnorm", "residual": False}) == "batchnorm"
    assert variant_name({"norm": "none", "residual": True}) == "residual"
    assert variant_name({"norm": "none", "residual": False, "init": "default"}) == "default_init"
    assert variant_name({"norm": "none"}, ["depth=3", "variant=torch_init"]) == "torch_init"


def test_experiment_configs_compose(compose_cfg):
    for name, model in (("depth_mlp", "mlp"), ("depth_cnn", "cnn"), ("depth_smoke", "mlp")):
        cfg = compose_cfg("train", [f"experiment={name}", "variant=residual"])
        assert cfg.model.name == model and cfg.model.residual and cfg.analysis.enabled


def test_two_run_sweep_end_to_end(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_script("train.py", "-m", "experiment=depth_smoke", f"hydra.sweep.dir={sweep}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == ["depth=1,variant=plain", "depth=2,variant=plain"]
    for run in runs:
        assert json.loads((sweep / run / "final.json").read_text())["status"] == "ok"
        assert (sweep / run / "analysis.json").is_file()
    # A re-run of the finished sweep skips every run.
    again = run_script("train.py", "-m", "experiment=depth_smoke", f"hydra.sweep.dir={sweep}", timeout=600)
    assert again.stdout.count("skipping") == 2, again.stdout[-2000:]
    report = run_script("compare_depth.py", f"sweep={sweep}", "cross_cka_images=200", "progress=false", timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    out = sweep / "depth_report"
    for name in ("summary.csv", "summary.md", "index.html", "accuracy_vs_depth.png", "probe_vs_position.png",
                 "grad_norms.png", "complexity.png", "cka_within.png", "cka_cross_depth.png", "curves_by_depth.png"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_submitit_local_launcher_runs_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_script("train.py", "-m", "experiment=depth_smoke", "hydra/launcher=submitit_local",
                      "hydra.launcher.timeout_min=10", "analysis.enabled=false",
                      f"hydra.sweep.dir={sweep}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finals = sorted(sweep.glob("*/final.json"))
    assert len(finals) == 2 and all(json.loads(f.read_text())["status"] == "ok" for f in finals)
