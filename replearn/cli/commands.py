"""Console commands (``replearn-train``, ``replearn-visualize``, ...): the scripts/ entry points, installed.

Each composes the same config as its script in scripts/ (from :data:`replearn.conf.CONFIG_DIR`, so
they also work from a non-editable install) and calls the same library function.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig


def _run(config_name: str, task: Callable[[DictConfig], None]) -> None:
    import hydra

    from replearn.cli.check import check_cli, report_errors
    from replearn.conf import CONFIG_DIR

    check_cli(config_name)
    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(report_errors(task))()


def _train(cfg: DictConfig) -> None:
    from replearn.cli.check import hydra_output_dir
    from replearn.training.loop import train as run_training

    run_training(cfg, output_dir=hydra_output_dir())


def _visualize(cfg: DictConfig) -> None:
    from replearn.visualize.run import visualize_run

    visualize_run(cfg)


def _compare_depth(cfg: DictConfig) -> None:
    from replearn.report.build import compare_depth as build_report

    build_report(cfg)


def _trace(cfg: DictConfig) -> None:
    from replearn.cli.check import hydra_output_dir
    from replearn.trace import trace as run_trace

    run_trace(cfg, output_dir=hydra_output_dir())


def _bench(cfg: DictConfig) -> None:
    from replearn.bench.report import run_suite
    from replearn.cli.check import hydra_output_dir

    run_suite(cfg, output_dir=hydra_output_dir())


def train() -> None:
    """``replearn-train``: python scripts/train.py."""
    _run("train", _train)


def visualize() -> None:
    """``replearn-visualize``: python scripts/visualize.py."""
    _run("visualize", _visualize)


def compare_depth() -> None:
    """``replearn-compare-depth``: python scripts/compare_depth.py."""
    _run("compare_depth", _compare_depth)


def trace() -> None:
    """``replearn-trace``: python scripts/trace.py."""
    _run("trace", _trace)


def bench() -> None:
    """``replearn-bench``: python scripts/bench.py."""
    _run("bench", _bench)
