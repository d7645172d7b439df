"""The few calls a notebook needs that the library modules do not already give: a config from
override strings (the command line's syntax) and a training run that hands back the trained model.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from replearn.conf.compose import compose, validate_config
from replearn.errors import ReplearnError
from replearn.runs.layout import read_metrics
from replearn.runs.load import load_run
from replearn.training.loop import train as run_training
from replearn.training.own_config import own_overrides
from replearn.training.resume import force_and_resume, resume_target


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
    ``trainer.resume=<run>`` continues that run in its own folder with its own settings, like the script.
    """
    overrides = [overrides] if isinstance(overrides, str) else list(overrides)
    resume = next((o.partition("=")[2] for o in overrides if o.startswith("trainer.resume=")), None)
    if resume:  # as on the command line: the run's own settings (from its checkpoint) first, then these
        run_dir = resume_target(resume)
        if "trainer.force=true" in overrides:
            raise ReplearnError(force_and_resume(run_dir))
        kept, removed = own_overrides(run_dir, overrides)
        if removed:
            print(f"note: {run_dir} has settings this version no longer has, left out: {', '.join(removed)}",
                  file=sys.stderr)
        overrides = kept + overrides
        output_dir = run_dir if output_dir is None else output_dir
    cfg = compose_config("train", overrides)
    if output_dir is None:
        output_dir = Path("outputs") / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}_{cfg.model.name}_d{cfg.depth}"
    final = run_training(cfg, output_dir)
    run = load_run(Path(output_dir))
    run.final = final
    run.metrics = read_metrics(output_dir)
    return run
