"""Every file name of a run folder (and of a sweep folder), in one place, with the one reader of each file.

Other modules name run-folder files only through these constants and read them only through the
readers here. One rule for all of them: a file that is absent or unreadable reads as nothing (None or
no rows); in a JSON-lines file a line torn by a killed run (or any line that is not a row of that
file) is dropped, with one warning line that says how many rows were dropped from which file.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# ------------------------------------------------------------------ a training run's folder
CONFIG = "config.yaml"  # the resolved config
LOG = "train.log"  # the console's lines, time-stamped
METRICS = "metrics.jsonl"  # one row per epoch
FINAL = "final.json"  # status and test results of a finished run
CHECKPOINT = "checkpoint.pt"  # model, optimizer, scheduler, RNG states, epoch
CURVES = "curves.png"
METRICS_CSV = "metrics.csv"  # logger=csv
TENSORBOARD = "tensorboard"  # logger=tensorboard (a folder)
WANDB = "wandb"  # logger=wandb (a folder)
ANALYSIS = "analysis.json"  # analysis.enabled=true
RESUMES = "resumes.jsonl"  # one row per resume
CONFIG_HISTORY = "config_history"  # replaced config.yaml files (a folder)
LOCK = ".lock"  # the OS lock of the process that owns the folder
VIZ = "viz"  # scripts/visualize.py's page (a folder)
HYDRA = ".hydra"  # Hydra's own copies of the config and the overrides (a folder)
HYDRA_OVERRIDES = "overrides.yaml"  # inside HYDRA
CONTROLS = "controls"  # control networks of this run, each a complete run folder of its own (a folder)
SHUFFLED_LABELS = "shuffled_labels"  # inside CONTROLS: the twin trained on shuffled labels (replearn.analysis.controls)

# ------------------------------------------------------------------ a sweep's folder
SWEEP_PROGRESS = "sweep_progress.jsonl"
MULTIRUN = "multirun.yaml"
DEPTH_REPORT = "depth_report"  # scripts/compare_depth.py's output (a folder)

PathLike = str | os.PathLike


def _warn(message: str) -> None:
    # The project's warning line (as replearn.cache): plain stderr, shown every time, whoever runs it.
    print(f"warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------ the rules
def load_json(path: PathLike) -> Any:
    """The JSON document at ``path``, or None if it is absent or unreadable (callers say what that means)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):  # ValueError: not JSON, or undecodable bytes
        return None


def load_yaml(path: PathLike) -> Any:
    """The YAML document at ``path``, or None if it is absent or unreadable."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: undecodable bytes
        return None


def read_jsonl(path: PathLike, keep: Callable[[dict], bool] = lambda row: True) -> list[dict]:
    """The JSON objects of a JSON-lines file that ``keep`` accepts; blank lines are skipped.

    A torn or unparseable line, or a row that is not an object ``keep`` accepts, is dropped; the drops
    are counted in one warning line naming the file.
    """
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    rows, dropped = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(row, dict) and keep(row):
            rows.append(row)
        else:
            dropped += 1
    if dropped:
        rows_text = "1 row" if dropped == 1 else f"{dropped} rows"
        _warn(f"dropped {rows_text} of {path}: torn by a killed run or not a row of that file; read the other {len(rows)}")
    return rows


# ------------------------------------------------------------------ one reader per file
def _is_epoch_row(row: dict) -> bool:
    return isinstance(row.get("epoch"), int)


def read_metrics(run_dir: PathLike) -> list[dict]:
    """The epoch rows of ``metrics.jsonl`` (rows with an integer ``epoch``); [] if there is none."""
    return read_jsonl(Path(run_dir) / METRICS, keep=_is_epoch_row)


def read_resumes(run_dir: PathLike) -> list[dict]:
    """The rows of ``resumes.jsonl``, one per resume; [] if the run was never resumed."""
    return read_jsonl(Path(run_dir) / RESUMES)


def read_sweep_progress(sweep_dir: PathLike) -> list[dict]:
    """The rows of a sweep's ``sweep_progress.jsonl`` (its start, then one per finished job)."""
    return read_jsonl(Path(sweep_dir) / SWEEP_PROGRESS)


def _dict_or_none(value: Any) -> dict | None:
    return value if isinstance(value, dict) else None


def read_final(run_dir: PathLike) -> dict | None:
    """``final.json`` as a dict, or None if absent or unreadable (then the run is not finished).

    ``load_json(run_dir / FINAL)`` gives the raw document where a caller must say what is wrong with it.
    """
    return _dict_or_none(load_json(Path(run_dir) / FINAL))


def read_analysis(run_dir: PathLike) -> dict | None:
    """``analysis.json`` as a dict, or None if absent or unreadable."""
    return _dict_or_none(load_json(Path(run_dir) / ANALYSIS))


def read_config(run_dir: PathLike) -> dict | None:
    """A run's resolved ``config.yaml`` as a dict, or None if absent, unreadable or without a ``model`` section.

    ``read_config(run_dir / HYDRA)`` reads Hydra's copy (same file name).
    """
    cfg = load_yaml(Path(run_dir) / CONFIG)
    return cfg if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) else None


def read_overrides(run_dir: PathLike) -> list | None:
    """The command-line overrides of a run (``.hydra/overrides.yaml``), or None if absent or unreadable."""
    overrides = load_yaml(Path(run_dir) / HYDRA / HYDRA_OVERRIDES)
    return overrides if isinstance(overrides, list) else None


def read_multirun(sweep_dir: PathLike) -> dict | None:
    """Hydra's ``multirun.yaml`` of a sweep folder, or None if absent or unreadable."""
    return _dict_or_none(load_yaml(Path(sweep_dir) / MULTIRUN))


# ------------------------------------------------------------------ the writers' side
def json_safe(value):
    """Replace NaN/inf by None recursively (strict JSON); tensors become lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    # A tensor can only exist once torch is imported: this module stays torch-free (the CLI's checks import it).
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
