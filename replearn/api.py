"""The few calls a notebook needs that the library modules do not already give: a config from
override strings (the command line's syntax) and a training run that hands back the trained model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from replearn.errors import ReplearnError


def compose_config(config_name: str = "train", overrides: Sequence[str] | str = ()) -> DictConfig:
    """The config ``scripts/<config_name>.py`` would run with these overrides (e.g. ``["model=cnn", "depth=4"]``).

    Checked like on the command line: a typo or bad value raises ReplearnError with one line.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import replearn.conf  # noqa: F401  (registers the schemas)
    from replearn.cli.check import _validators, describe_config_error
    from replearn.conf import CONFIG_DIR

    overrides = [overrides] if isinstance(overrides, str) else list(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
    except Exception as exc:  # Hydra's composition errors are long; say it in one line
        raise ReplearnError(describe_config_error(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    validate = _validators().get(config_name)
    if validate is not None:
        validate(cfg)
    return cfg


def train(overrides: Sequence[str] | str = (), output_dir: str | os.PathLike | None = None):
    """Train as ``python scripts/train.py <overrides>`` would; return the run, loaded (:class:`~replearn.runs.load.LoadedRun`).

    ``output_dir`` defaults to ``outputs/<date>/<time>_<model>_d<depth>`` like the script's. A folder
    that already holds a finished run is loaded, not trained again (``trainer.force=true`` re-trains).
    The run's numbers are in ``run.final`` (``final.json``) and ``run.metrics`` (``metrics.jsonl``).
    """
    from replearn.runs.load import load_run
    from replearn.training.loop import train as run_training

    cfg = compose_config("train", overrides)
    if output_dir is None:
        output_dir = Path("outputs") / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}_{cfg.model.name}_d{cfg.depth}"
    final = run_training(cfg, output_dir)
    run = load_run(Path(output_dir))
    run.final = final
    run.metrics = _read_metrics(Path(output_dir))
    return run


def _read_metrics(run_dir: Path) -> list[dict]:
    import json

    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
