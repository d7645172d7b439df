"""Draw every figure for every layer of a trained run into <run dir>/viz/ with an index.html.

    python scripts/visualize.py run=latest
    python scripts/visualize.py run=outputs/2026-01-01/12-00-00_cnn_d4 layers=[blocks.0,head] k=16
"""

import hydra
from omegaconf import DictConfig

from replearn.cli.check import check_cli
from replearn.cli.errors import report_errors
from replearn.visualize.run import draw_run


@hydra.main(config_path="../configs", config_name="visualize", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    # The figures belong to the run, not to Hydra's output folder (hydra.run.dir is "." here). check_cli
    # validated cfg before Hydra started (report_errors does, in a sweep): draw_run does not validate again.
    draw_run(cfg)


if __name__ == "__main__":
    check_cli("visualize")
    main()
