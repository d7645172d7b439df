"""Depth report: aggregation over seeds, failed/diverged/missing runs, and the end-to-end sweep."""

import csv
import json
import math

import pytest
import yaml
from fake_sweep import fake_analysis, flat, hierarchy, reversed_hierarchy, write_fake_run
from helpers import run_script
from omegaconf import OmegaConf
from scipy import stats

from replearn.report.build import accuracy_table, compare_depth
from replearn.report.collect import collect_runs, variant_name
from replearn.report.stats import mean_ci95


def _csv_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


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
    rows = _csv_rows(tmp_path / "depth_report" / "runs.csv")
    assert {(r["variant"], r["status"]) for r in rows} == {("plain", "ok"), ("residual", "diverged")}
    # No analysis anywhere: the per-layer table is empty but loadable (a header).
    layers = _csv_rows(tmp_path / "depth_report" / "summary.csv")
    assert layers == [] and "trained_vs_control" in (tmp_path / "depth_report" / "summary.csv").read_text()
    text = (tmp_path / "depth_report" / "summary.md").read_text()
    assert "residual depth 3 seed 0: diverged loss became nan" in text
    assert "accuracy_vs_depth.png" in index.read_text()


def test_synthetic_sweep_end_to_end(tmp_path):
    """Fake run folders with known trends -> the report's CSVs, sentences, figures and page."""
    for variant, levels in (("plain", hierarchy), ("residual", reversed_hierarchy)):
        for depth in (1, 2, 4):
            for seed in (0, 1, 2):
                write_fake_run(tmp_path / f"depth={depth},seed={seed},variant={variant}", depth, seed, variant=variant,
                               analysis=fake_analysis(depth, seed, levels=levels, control={"probe_eval_acc": flat(0.2)}))
    write_fake_run(tmp_path / "depth=8,seed=0,variant=plain", 8, 0, status="diverged")
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"params": {"depth": "1,2,4,8", "seed": "0,1,2", "variant": "plain,residual"}},
        "overrides": {"task": []}}}))
    cfg = OmegaConf.create({"sweep": str(tmp_path), "root": str(tmp_path), "cross_cka_images": 0, "progress": False})
    index = compare_depth(cfg)
    out = tmp_path / "depth_report"

    rows = _csv_rows(out / "summary.csv")
    probe = [r for r in rows if r["metric"] == "probe_eval_acc"]
    assert len(probe) == 2 * sum(d + 2 for d in (1, 2, 4))  # every layer of every analysed depth, per variant
    row = next(r for r in probe if (r["variant"], r["depth"], r["layer"]) == ("plain", "4", "blocks.3"))
    expected = [fake_analysis(4, s)["trained"]["probe_eval_acc"][4] for s in (0, 1, 2)]
    control = [fake_analysis(4, s, control={"probe_eval_acc": flat(0.2)})["random_init"]["probe_eval_acc"][4]
               for s in (0, 1, 2)]
    ci = stats.ttest_rel(expected, control).confidence_interval(0.95)
    assert (float(row["diff_low"]), float(row["diff_high"])) == pytest.approx((ci.low, ci.high), abs=1e-5)
    assert float(row["trained_mean"]) == pytest.approx(sum(expected) / 3, abs=1e-6)
    assert row["trained_vs_control"] == "above 0" and float(row["floor_mean"]) < 0.15
    assert {r["metric"] for r in rows} >= {"class_selectivity", "dissect_fraction_l2", "dissect_mean_best_iou_l3",
                                          "erf_area", "cka_input"}
    runs = {(r["variant"], r["depth"], r["seed"]): r["status"] for r in _csv_rows(out / "runs.csv")}
    assert runs[("plain", "8", "0")] == "diverged" and runs[("residual", "8", "0")] == "missing"

    md = (out / "summary.md").read_text()
    assert "plain: Linear-probe accuracy (held-out): trained rises with layer position" in md
    assert "edges < parts < digits in 3 of 3 seed(s)" in md  # plain: the planted hierarchy
    assert "(3 of 3 do not)" in md  # residual: the planted reverse order is reported as such
    assert "| plain | 4 | blocks.3 |" in md
    # At a glance: the probe's trained slope with its CI, and all 10 hidden/logit cells above the control.
    # At a glance, the probe row: vs random init, vs the shuffled-label network, vs the floor (Holm-adjusted cells).
    assert "| plain | linear-probe accuracy (held-out) | +0.6" in md
    assert "| 10 / 0 / 0 of 10 | 7 / 0 / 3 of 10 | 10 / 0 / 0 of 10 |" in md
    # The verdicts come first, and no undetected difference is written as absent.
    assert md.index("## What the numbers say about the claim") < md.index("## Test accuracy") < md.index("## At a glance")
    assert "not detected in 3 (could have detected ≥ 0." in md and "no difference" not in md
    assert "plain: Holds: edges & strokes < parts & shapes < digits" in md
    assert float(row["shuffled_labels_mean"]) == pytest.approx(0.5, abs=0.02) and row["holm_vs_shuffled_labels"]
    assert "| residual | trained | 0.7" in md and "| 0 of 3 |" in md
    page = index.read_text()
    for name in ("accuracy_vs_depth.png", "curves_by_depth.png", "probe_vs_position.png", "complexity.png",
                 "dissection_levels_plain.png", "dissection_levels_residual.png", "cka_within_plain.png",
                 "cka_within_residual.png", "grad_norms.png", "dead_units.png", "level2_profiles.png"):
        assert (out / name).is_file() and f'src="{name}"' in page, name
    assert "edges &lt; parts &lt; digits in 3 of 3 seed(s)" in page  # escaped by the template
    assert "summary.csv" in page and "runs.csv" in page


def test_old_analysis_files_without_the_new_measures_still_render(tmp_path):
    """Runs analysed before the shuffled-label network, the null, the IoU ceilings and the concept probes."""
    for depth in (1, 4):
        for seed in (0, 1):
            write_fake_run(tmp_path / f"depth={depth},seed={seed}", depth, seed,
                           analysis=fake_analysis(depth, seed, legacy=True))
    cfg = OmegaConf.create({"sweep": str(tmp_path), "root": str(tmp_path), "cross_cka_images": 0, "progress": False})
    page = compare_depth(cfg).read_text()
    out = tmp_path / "depth_report"
    rows = _csv_rows(out / "summary.csv")
    assert {r["metric"] for r in rows} >= {"probe_eval_acc", "dissect_fraction_l2"}
    assert not {r["metric"] for r in rows} & {"concept_probe_l2", "dissect_iou_vs_ceiling_l2"}
    assert all(r["shuffled_labels_mean"] == "" and r["holm_vs_shuffled_labels"] == "" for r in rows)
    md = (out / "summary.md").read_text()
    assert "plain: Untested (the primary measure, within-class concept probe" in md  # the middle stage
    assert "plain: Untested against shuffled labels: units labelled with digits" in md
    assert "no shuffled-label network in these runs" in md and "| n/a |" in md
    assert "Holds" not in md.split("## Test accuracy")[0]
    assert "What the numbers say about the claim" in page


def test_hand_edited_analysis_files_are_skipped_not_fatal(tmp_path):
    good = fake_analysis(2, 0)
    odd = fake_analysis(2, 1)
    odd["trained"]["probe_eval_acc"] = ["high", None, True, 0.5]  # not numbers: read as missing
    odd["trained"]["cka"] = [[1.0, 0.5], [0.5]]  # ragged
    del odd["random_init"]  # no control: control columns stay empty
    odd["dissection"] = "gone"
    write_fake_run(tmp_path / "depth=2,seed=0", 2, 0, analysis=good)
    write_fake_run(tmp_path / "depth=2,seed=1", 2, 1, analysis=odd)
    write_fake_run(tmp_path / "depth=2,seed=2", 2, 2, analysis={"layers": "input", "position": [0], "trained": {}})
    write_fake_run(tmp_path / "depth=2,seed=3", 2, 3, analysis=[1, 2])
    cfg = OmegaConf.create({"sweep": str(tmp_path), "root": str(tmp_path), "cross_cka_images": 0, "progress": False})
    compare_depth(cfg)
    rows = _csv_rows(tmp_path / "depth_report" / "summary.csv")
    probe = {r["layer"]: r for r in rows if r["metric"] == "probe_eval_acc"}
    assert probe["blocks.1"]["n_seeds"] == "1" and probe["logits"]["n_seeds"] == "2"
    assert probe["blocks.1"]["diff_pairs"] == "1"  # seed 1 has no control to pair with
    runs = _csv_rows(tmp_path / "depth_report" / "runs.csv")
    assert len(runs) == 4  # every run is still listed


def test_page_template_escapes_and_renders_every_part(tmp_path):
    from replearn.page import Figure, Section, Table, render_html, render_markdown

    sections = [Section("A <b>", intro="x < y", bullets=["one & two"], figures=[Figure("f.png", "cap")],
                        tables=[Table(["k", "v"], [["a|b", "<1>"]], caption="t", collapsed=True)]),
                Section("A <b>", paragraphs=["again"], level=3)]
    page = render_html(tmp_path / "p.html", "T <x>", sections, meta=["m"], links=[("s.csv", "s")]).read_text()
    assert "<b>" not in page and "T &lt;x&gt;" in page and "one &amp; two" in page and "&lt;1&gt;" in page
    assert 'id="a-b"' in page and 'id="a-b-x"' in page  # repeated titles get distinct anchors
    assert "<details><summary>t (1 rows)</summary>" in page and 'src="f.png"' in page
    md = render_markdown(tmp_path / "p.md", "T", sections).read_text()
    assert "| a\\|b | <1> |" in md and "### A <b>" in md and "- one & two" in md


def test_level_fraction_bars_and_integer_epoch_ticks():
    from replearn.report.plots import plot_curves_by_depth, plot_layer_profiles, plot_level_fractions

    trained = {"l1": [0.5, 0.1], "l2": [0.2, 0.3], "l3": [0.0, 0.5], "unlabelled": [0.3, 0.1]}
    control = {"l1": [0.0, 0.0], "l2": [0.0, 0.0], "l3": [0.0, 0.0], "unlabelled": [1.0, 1.0]}
    fig = plot_level_fractions(["blocks.0", "logits"], trained, control)
    bars = fig.axes[0].patches
    assert len(bars) == 16  # 2 layers x 4 levels x (trained, control)
    tops = sorted({round(b.get_y() + b.get_height(), 6) for b in bars})
    assert tops[-1] == pytest.approx(1.0)
    fig = plot_level_fractions(["blocks.0", "logits"], trained, control, shuffled=control)
    assert len(fig.axes[0].patches) == 24  # and a third bar per layer: the shuffled-label network
    profile = {2: ([0.0, 0.5, 1.0], [0.1, 0.5, 0.9])}
    ax = plot_layer_profiles(profile, profile, shuffled=profile).axes[0]
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--", "-."]
    assert "dash-dot: shuffled labels" in ax.get_title()
    for curves in ({1: [0.9]}, {1: [0.9, 0.95], 2: [0.8, 0.9]}, {1: [0.5 + 0.01 * e for e in range(40)]}):
        fig = plot_curves_by_depth(curves)
        ax = fig.axes[0]
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


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
    for name in ("summary.csv", "runs.csv", "summary.md", "index.html", "accuracy_vs_depth.png", "probe_vs_position.png",
                 "grad_norms.png", "complexity.png", "cka_within_plain.png", "cka_cross_depth.png", "curves_by_depth.png"):
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
