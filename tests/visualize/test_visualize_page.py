"""The visualize pipeline writes every figure and an index.html whose images all load in headless Chromium."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import run_script

import replearn.conf.visualize  # noqa: F401  (registers visualize_schema)
from replearn.errors import ReplearnError
from replearn.training.loop import train
from replearn.visualize.run import visualize_run

TRAIN = ["data=synthetic", "data.num_train=200", "data.num_test=120", "data.val_size=50",
         "trainer.batch_size=64", "trainer.epochs=1", "trainer.progress=false", "device=cpu"]
VIZ = ["units=4", "k=4", "steps=8", "embedding_samples=60", "num_inputs=2", "progress=false", "device=cpu"]
KINDS = {"feature_maps", "activations", "topk", "actmax"}

# Appended to a copy of index.html (same folder, so relative links resolve the same way): after the load
# event, which waits for every image, record per image whether it decoded to a non-empty bitmap.
PROBE = """<script>
window.addEventListener("load", () => {
  const report = [...document.images].map(i => [i.getAttribute("src"), i.complete && i.naturalWidth > 0]);
  document.body.setAttribute("data-image-report", JSON.stringify(report));
});
</script>"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, compose_cfg):
    """One tiny trained MLP and CNN run, each visualized once: {name: (run_dir, index.html)}."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, overrides in {"mlp": ["model=mlp", "depth=2", "model.width=16"],
                            "cnn": ["model=cnn", "depth=2", "model.channels=4", "model.max_channels=8"]}.items():
        train(compose_cfg("train", TRAIN + overrides), output_dir=base / name)
        page = visualize_run(compose_cfg("visualize", [f"run={base / name}", *VIZ]))
        out[name] = (base / name, page)
    return out


def _image_sources(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page.read_text())


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_every_layer_gets_every_figure(runs, name):
    run_dir, page = runs[name]
    assert page == run_dir / "viz" / "index.html"
    sources = _image_sources(page)
    files = sorted(p.name for p in page.parent.glob("*.png"))
    assert sorted(sources) == files  # the page shows every figure written, and only those
    layers = ["blocks-0", "blocks-1", "head"]
    expected = {"first_layer_weights.png", "embedding_overview.png", "actmax_priors.png", "dissection_levels.png",
                "summary.png"}
    for layer in layers:
        expected |= {f"{layer}_{kind}.png" for kind in ("topk", "actmax")}  # embeddings: overview panels only
        maps = "feature_maps" if name == "cnn" and layer != "head" else "activations"
        expected.add(f"{layer}_{maps}.png")
    # Layers with at least one labelled unit also get their units' evidence figure.
    evidence = {f for f in files if f.endswith("_dissection.png")}
    assert evidence <= {f"{layer}_dissection.png" for layer in layers}
    assert set(files) == expected | evidence
    text = page.read_text()
    assert sources[0] == "summary.png" and "At a glance" in text  # the page opens with the summary figure
    assert "What each unit detects" in text and "random init" in text
    assert "hidden layer 1 of 2" in text and "head (class logits)" in text and "<figcaption>" in text
    assert str(run_dir) not in re.sub(r'<p class="meta">.*?</p>', "", text)  # links are relative


def test_sections_come_in_the_declared_order(runs):
    from replearn.visualize.run import PAGE_ORDER

    assert PAGE_ORDER == ("at_a_glance", "overview", "actmax", "dissection", "shapes", "layers")
    headings = re.findall(r"<h2[^>]*>([^<]*)</h2>", runs["mlp"][1].read_text())
    assert headings == ["At a glance", "Overview", "Act-max recognizability", "What each unit detects",
                        "blocks.0 (hidden layer 1 of 2)", "blocks.1 (hidden layer 2 of 2)", "head (class logits)"]


def test_visualize_run_rejects_unknown_layer(runs, compose_cfg):
    run_dir, _ = runs["mlp"]
    cfg = compose_cfg("visualize", [f"run={run_dir}", "layers=[blocks.7]", *VIZ])
    with pytest.raises(ReplearnError, match="blocks.7.*choose from all, blocks.0, blocks.1, head"):
        visualize_run(cfg, output_dir=run_dir / "other")


@pytest.mark.parametrize("override, match", [("units=0", "units"), ("embedding=umap", "embedding"),
                                             ("layers=some", "layers")])
def test_visualize_run_rejects_bad_options(runs, compose_cfg, override, match):
    cfg = compose_cfg("visualize", [f"run={runs['mlp'][0]}", override])
    with pytest.raises(ReplearnError, match=match):
        visualize_run(cfg)


def test_visualize_run_requires_run(compose_cfg):
    with pytest.raises(ReplearnError, match="run is missing"):
        visualize_run(compose_cfg("visualize", []))


def test_same_seed_gives_identical_figures(runs, tmp_path):
    from replearn.conf.visualize import VisualizeConfig
    from replearn.runs.load import load_run
    from replearn.visualize.run import render_all

    loaded = load_run(runs["cnn"][0])
    splits = loaded.splits()
    opts = VisualizeConfig(layers=["blocks.1"], units=3, k=3, steps=5, embedding_samples=40, num_inputs=2, progress=False)
    first = render_all(loaded.model, splits, tmp_path / "a", opts).parent
    second = render_all(loaded.model, splits, tmp_path / "b", opts).parent
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and "blocks-1_actmax.png" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Chromium is missing: .ci/run must install Debian's chromium package")
        pytest.skip("Chromium not installed (apt-get install chromium); CI runs this test")
    return path


def _load_report(page: Path, tmp_path: Path) -> list:
    """Open a probe copy of ``page`` in headless Chromium; return [[src, loaded], ...] for every <img>."""
    probe = page.parent / "_probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        proc = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
             "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=90,
        )
    finally:
        probe.unlink()
    found = re.search(r'data-image-report="([^"]*)"', proc.stdout)
    assert found, f"the page never finished loading in Chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_every_image_loads_in_headless_chromium(runs, name, tmp_path):
    _, page = runs[name]
    report = _load_report(page, tmp_path)
    assert [src for src, _ in report] == _image_sources(page)
    assert len(report) >= 10
    failed = [src for src, ok in report if not ok]
    assert not failed, f"images that did not load: {failed}"


def test_chromium_check_catches_missing_and_broken_images(runs, tmp_path):
    _, page = runs["mlp"]
    copy = tmp_path / "viz"
    shutil.copytree(page.parent, copy)
    (copy / "head_actmax.png").unlink()
    (copy / "blocks-0_topk.png").write_bytes(b"not a png")
    report = dict(_load_report(copy / "index.html", tmp_path))
    assert report["head_actmax.png"] is False and report["blocks-0_topk.png"] is False
    assert report["blocks-1_topk.png"] is True


@pytest.mark.slow
def test_visualize_script_on_latest_run(runs, tmp_path):
    run_dir, _ = runs["cnn"]
    root = tmp_path / "outputs"
    shutil.copytree(run_dir, root / "day" / "run", ignore=shutil.ignore_patterns("viz"))
    proc = run_script("visualize.py", "run=latest", f"root={root}", *VIZ, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (root / "day" / "run" / "viz" / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # Hydra left nothing in the cwd
    bad = run_script("visualize.py", "run=latest", f"root={tmp_path / 'none'}", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: run=latest found no run")


def test_rerun_clears_its_own_stale_figures_only(runs, compose_cfg, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["mlp"][0], run_dir)
    viz = run_dir / "viz"
    old = {p.name for p in viz.glob("*.png")}
    assert "blocks-1_topk.png" in old and (viz / "actmax.json").is_file()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep")
    (viz / "linked.png").symlink_to(outside)
    (viz / "notes.txt").write_text("mine")
    (viz / "sub").mkdir()
    (viz / "sub" / "inner.png").write_bytes(b"keep")
    with pytest.raises(ReplearnError, match="blocks.7"):
        visualize_run(compose_cfg("visualize", [f"run={run_dir}", *VIZ, "layers=[blocks.7]"]))
    assert {p.name for p in viz.glob("*.png")} >= old  # a rejected option leaves the last page alone
    page = visualize_run(compose_cfg("visualize", [f"run={run_dir}", *VIZ, "layers=[blocks.0]", "dissect=false"]))
    pngs = {p.name for p in viz.glob("*.png") if not p.is_symlink()}
    assert sorted(pngs) == sorted(_image_sources(page))  # nothing stale beside the new page
    assert "blocks-1_topk.png" not in pngs and "blocks-0_topk.png" in pngs
    assert outside.read_bytes() == b"keep" and (viz / "linked.png").is_symlink()  # links are not followed
    assert (viz / "notes.txt").read_text() == "mine" and (viz / "sub" / "inner.png").is_file()


def test_units_are_chosen_by_response_and_dead_units_named(runs, tmp_path):
    from replearn.conf.visualize import VisualizeConfig
    from replearn.runs.load import load_run
    from replearn.visualize.run import render_all

    loaded = load_run(runs["mlp"][0])
    block = loaded.model.blocks[0]
    with torch.no_grad():  # unit 2 can never fire: no input weight, a negative bias before the ReLU
        block.linear.weight[2] = 0
        block.linear.bias[2] = -1.0
    opts = VisualizeConfig(layers=["blocks.0"], units=16, k=3, steps=3, embedding_samples=40, num_inputs=2,
                           progress=False, dissect=False)
    text = render_all(loaded.model, loaded.splits(), tmp_path / "viz", opts).read_text()
    shown = re.search(r"strongest first: ([0-9, ]+)", text).group(1).split(", ")
    assert shown[-1] == "2" and sorted(map(int, shown)) == list(range(16))
    assert "1 of them never fire on the test images (marked dead)" in text
    few = render_all(loaded.model, loaded.splits(), tmp_path / "few",
                     VisualizeConfig(layers=["blocks.0"], units=4, k=3, steps=3, embedding_samples=40,
                                     num_inputs=2, progress=False, dissect=False)).read_text()
    assert "the 4 most responsive units" in few and "marked dead" not in few
