"""A non-editable install: the wheel carries the configs, and the console commands run from anywhere."""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_configs_and_console_commands(tmp_path, mnist_root):
    # Build from a copy so nothing is written into the checkout (setuptools writes build/ next to the sources).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "outputs", "multirun", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "data", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, timeout=300)
    # The venv sees this interpreter's packages (torch, hydra, ...), so only replearn itself is installed.
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if os.name == "nt" else "bin")
    wheel = next((tmp_path / "wheel").glob("replearn-*.whl"))
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=300)
    env = dict(os.environ, REPLEARN_DATA_DIR=str(mnist_root), MPLBACKEND="Agg")
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args):
        return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)

    where = run("python", "-c", "import replearn.conf as c; print(c.__file__); print(c.CONFIG_DIR)")
    module_file, config_dir = where.stdout.split()
    assert str(tmp_path / "venv") in module_file and str(tmp_path / "venv") in config_dir, where.stdout
    assert (Path(config_dir) / "train.yaml").is_file() and (Path(config_dir) / "logger" / "tensorboard.yaml").is_file()

    trained = run("replearn-train", "data=synthetic", "data.num_train=300", "data.num_test=100", "data.val_size=50",
                  "depth=1", "trainer.epochs=1", "trainer.progress=false", "trainer.threads=1",
                  f"hydra.run.dir={work / 'run'}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (work / "run" / "final.json").is_file() and "epoch 1/1" in (work / "run" / "train.log").read_text()
    traced = run("replearn-trace", f"hydra.run.dir={work / 'trace'}")
    assert traced.returncode == 0 and "-> ReLU -> 26" in traced.stdout, traced.stderr[-2000:]
    for command in ("replearn-visualize", "replearn-compare-depth", "replearn-bench"):
        helped = run(command, "--help")
        assert helped.returncode == 0 and command in helped.stdout and "_schema" not in helped.stdout, command
