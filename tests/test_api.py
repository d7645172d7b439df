"""The notebook API: `import replearn` is cheap, every name in __all__ resolves, the README snippet runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import replearn
from replearn.errors import ReplearnError

README = Path(__file__).resolve().parents[1] / "docs" / "analysis.md"  # holds the "Use it from Python" snippet


def test_import_is_cheap_and_dir_lists_the_api():
    code = "import sys, replearn; print(sorted(m for m in ('torch', 'hydra', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"train", "load_run", "build_model", "capture_activations", "dissect_model", "plot_top_k"} <= set(dir(replearn))


@pytest.mark.parametrize("name", replearn.__all__)
def test_every_exported_name_resolves(name):
    value = getattr(replearn, name)
    assert value is not None and getattr(value, "__name__", name) == name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        replearn.trian  # noqa: B018


def test_compose_config_checks_like_the_command_line():
    cfg = replearn.compose_config("train", ["model=cnn", "depth=4"])
    assert cfg.model.name == "cnn" and cfg.model.depth == 4 and cfg.trainer.batch_size == 128
    with pytest.raises(ReplearnError, match="model=transformer is invalid: choose one of cnn, mlp"):
        replearn.compose_config("train", ["model=transformer"])
    with pytest.raises(ReplearnError, match="trainer.epochs"):
        replearn.compose_config("train", ["trainer.epochs=0"])


def readme_snippet() -> str:
    text = README.read_text()
    section = text.split("## Use it from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs(tmp_path, monkeypatch, mnist_root):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLEARN_DATA_DIR", str(mnist_root))
    namespace: dict = {}
    exec(compile(readme_snippet(), "docs/analysis.md", "exec"), namespace)
    run = namespace["run"]
    assert (run.run_dir / "final.json").is_file() and run.final["status"] == "ok"
    assert len(run.metrics) == 1
    assert (tmp_path / "top9.png").is_file()
    assert set(namespace["probes"]) == {"input", "blocks.0", "blocks.1", "logits"}
    assert namespace["acts"]["blocks.0"].shape == (1000, 256)


def test_train_resumes_a_run_in_its_own_folder_with_its_own_settings(tmp_path):
    from helpers import FAST

    first = replearn.train([*FAST, "trainer.epochs=1", "model.width=24"], output_dir=tmp_path / "run")
    assert first.final["epochs_completed"] == 1
    # Only the resume and the new length are typed: depth, width and the data come from the checkpoint.
    again = replearn.train([f"trainer.resume={tmp_path / 'run'}", "trainer.epochs=2", "trainer.threads=1",
                            "trainer.progress=false"])
    assert again.run_dir == tmp_path / "run" and again.final["epochs_completed"] == 2
    assert again.cfg.model.width == 24 and again.cfg.data.name == "synthetic" and len(again.metrics) == 2
    with pytest.raises(ReplearnError, match="trainer.resume=.* is a file, not a run"):
        replearn.train([f"trainer.resume={tmp_path / 'run' / 'final.json'}"])
