"""The few calls a notebook needs that the library modules do not already give: a config from
override strings (the command line's syntax) and a training run that hands back the trained model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from replearn.conf.compose import compose, validate_config
from replearn.runs.layout import read_metrics
from replearn.runs.load import load_run
from replearn.training.loop import train as run_training


def compose_config(config_name: str = "train", overrides: Sequence[str] | str = ()) -> DictConfig:
    """The config ``scripts/<config_name>.py`` would run with these overrides (e.g. ``["model=cnn", "depth=4"]``).

    Checked like on the command line: a typo or bad value raises ReplearnError with one line.
    """
    cfg = compose(config_name, [overrides] if isinstance(overrides, str) else overrides)
    validate_config(config_name, cfg)
    return cfg


def train(overrides: Sequence[str] | str = (), output_dir: str | os.PathLike | None = None):
    """Train as ``python scripts/train.py <overrides>`` would; return the run, loaded (:class:`~replearn.runs.load.LoadedRun`).

    ``output_dir`` defaults to ``outputs/<date>/<time>_<model>_d<depth>`` like the script's. A folder
    that already holds a finished run is loaded, not trained again (``trainer.force=true`` re-trains).
    The run's numbers are in ``run.final`` (``final.json``) and ``run.metrics`` (``metrics.jsonl``).
    """
    cfg = compose_config("train", overrides)
    if output_dir is None:
        output_dir = Path("outputs") / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}_{cfg.model.name}_d{cfg.depth}"
    final = run_training(cfg, output_dir)
    run = load_run(Path(output_dir))
    run.final = final
    run.metrics = read_metrics(output_dir)
    return run
