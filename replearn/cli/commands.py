"""Console commands (``replearn-train``, ``replearn-visualize``, ...): the scripts/ entry points, installed.

Each composes the same config as its script in scripts/ (from :data:`replearn.conf.CONFIG_DIR`, so
they also work from a non-editable install) and calls the same library function. A command imports
its library stack only when its job runs, so ``--help`` and a bad override answer without torch.
"""

from __future__ import annotations

from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from replearn.cli.check import check_cli
from replearn.cli.errors import report_errors
from replearn.cli.job import hydra_output_dir
from replearn.conf import CONFIG_DIR


def _run(config_name: str, task: Callable[[DictConfig], None]) -> None:
    check_cli(config_name)
    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(report_errors(task))()


def _train(cfg: DictConfig) -> None:
    # Each task imports only its own library stack, once its job runs: --help and a bad override stay torch-free.
    # lazy: the training stack imports torch (~1.4 s)
    from replearn.training.loop import train

    train(cfg, output_dir=hydra_output_dir())


def _visualize(cfg: DictConfig) -> None:
    from replearn.visualize.run import draw_run  # lazy: as in _train (torch)

    draw_run(cfg)  # validated by check_cli (report_errors in a sweep): not again


def _compare_depth(cfg: DictConfig) -> None:
    from replearn.report.build import compare_depth  # lazy: as in _train (torch)

    compare_depth(cfg)


def _trace(cfg: DictConfig) -> None:
    from replearn.trace import trace  # lazy: as in _train (torch)

    trace(cfg, output_dir=hydra_output_dir())


def _bench(cfg: DictConfig) -> None:
    from replearn.bench.report import run_suite  # lazy: as in _train (torch)

    run_suite(cfg, output_dir=hydra_output_dir())


def train_command() -> None:
    """``replearn-train``: python scripts/train.py."""
    _run("train", _train)


def visualize_command() -> None:
    """``replearn-visualize``: python scripts/visualize.py."""
    _run("visualize", _visualize)


def compare_depth_command() -> None:
    """``replearn-compare-depth``: python scripts/compare_depth.py."""
    _run("compare_depth", _compare_depth)


def trace_command() -> None:
    """``replearn-trace``: python scripts/trace.py."""
    _run("trace", _trace)


def bench_command() -> None:
    """``replearn-bench``: python scripts/bench.py."""
    _run("bench", _bench)
