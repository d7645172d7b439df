"""Forward propagation node by node: python scripts/trace.py [network=<yaml>] [run=<run dir>]."""

import hydra
from omegaconf import DictConfig

from replearn.cli.check import check_cli
from replearn.cli.errors import report_errors
from replearn.cli.job import hydra_output_dir
from replearn.trace import trace


@hydra.main(config_path="../configs", config_name="trace", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    trace(cfg, output_dir=hydra_output_dir())


if __name__ == "__main__":
    check_cli("trace")
    main()
