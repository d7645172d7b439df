"""Train a network: python scripts/train.py depth=5 (see configs/train.yaml)."""

import hydra
from omegaconf import DictConfig

from replearn.cli.check import check_cli
from replearn.cli.errors import report_errors
from replearn.cli.job import hydra_output_dir
from replearn.training.loop import train


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    train(cfg, output_dir=hydra_output_dir())


if __name__ == "__main__":
    check_cli("train")
    main()
