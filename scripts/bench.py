"""Benchmarks: python scripts/bench.py [suite=train|viz|analysis|dissection|...] (see configs/bench.yaml)."""

import hydra
from omegaconf import DictConfig

from replearn.bench.report import run_suite
from replearn.cli.check import check_cli
from replearn.cli.errors import report_errors
from replearn.cli.job import hydra_output_dir


@hydra.main(config_path="../configs", config_name="bench", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    run_suite(cfg, output_dir=hydra_output_dir())


if __name__ == "__main__":
    check_cli("bench")
    main()
