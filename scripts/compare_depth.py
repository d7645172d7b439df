"""Aggregate a depth sweep: python scripts/compare_depth.py sweep=multirun/depth_mlp (or sweep=latest)."""

import hydra
from omegaconf import DictConfig

from replearn.cli.check import check_cli
from replearn.cli.errors import report_errors
from replearn.report.build import compare_depth


@hydra.main(config_path="../configs", config_name="compare_depth", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    # The report belongs in the sweep folder (<sweep>/depth_report), not in a Hydra output folder.
    compare_depth(cfg)


if __name__ == "__main__":
    check_cli("compare_depth")
    main()
