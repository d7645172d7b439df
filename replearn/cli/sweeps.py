"""Sweeps on the command line: progress lines, and a warning when a sweep config runs without ``-m``.

:class:`SweepProgress` is a Hydra callback (``hydra.callbacks`` in configs/train.yaml). In a multirun
it prefixes every console line of a job with the job's overrides (``[depth=8,seed=1] epoch 1/2 ...``),
so the lines of parallel workers can be told apart, and after each job logs ``N/M done`` with an
ETA. The jobs may run in other processes (joblib, submitit), so the count is kept in a small file
in the sweep folder (``sweep_progress.jsonl``): one line when the sweep starts, one per finished job.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from replearn.cli.job import in_multirun
from replearn.runs.layout import SWEEP_PROGRESS, read_sweep_progress

log = logging.getLogger("replearn.sweep")


def single_run_warning(config: DictConfig) -> str | None:
    """A warning line when the config defines a sweep (e.g. ``experiment=depth_mlp``) but runs without ``-m``."""
    params = config.hydra.sweeper.get("params") or {}
    if not params:
        return None
    choices = config.hydra.runtime.choices
    experiment = choices.get("experiment") if choices is not None else None
    what = f"experiment={experiment}" if experiment else "this config"
    swept = ", ".join(f"{k}={v}" for k, v in params.items())
    return (f"warning: {what} is a sweep ({swept}) but runs as ONE job without -m; "
            f"add -m to run the sweep (python scripts/train.py -m {what if experiment else '...'})")


def count_jobs(config: DictConfig) -> int:
    """How many jobs the basic sweeper will launch: the product of the swept values' counts."""
    lines: dict[str, str] = {}
    params = config.hydra.sweeper.get("params") or {}
    for key, value in params.items():
        lines[str(key)] = f"{key}={value}"
    for line in config.hydra.overrides.task:
        lines[line.split("=", 1)[0].lstrip("+~")] = line  # the command line wins over sweeper.params
    total = 1
    for override in OverridesParser.create().parse_overrides(list(lines.values())):
        if override.is_sweep_override():
            total *= max(1, len(list(override.sweep_string_iterator())))
    return total


def format_seconds(seconds: float) -> str:
    """``95`` -> ``1m35s``; ``4000`` -> ``1h06m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(done: int, total: int, elapsed: float) -> str:
    """``[5/72 done, 1m10s elapsed, ETA 15m38s]``: the rest at the mean pace so far."""
    eta = format_seconds(elapsed / done * (total - done)) if done else "?"
    return f"[{done}/{total} done, {format_seconds(elapsed)} elapsed, ETA {eta}]"


def _append(path: Path, row: dict) -> None:
    # One short write with O_APPEND: lines from parallel workers do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(row) + "\n").encode())
    finally:
        os.close(fd)


class SweepProgress(Callback):
    """Hydra callback: per-job line prefixes and N/M done with an ETA (multirun); a warning when a
    sweep config runs as a single job."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        warning = single_run_warning(config)
        if warning:
            print(warning, file=sys.stderr, flush=True)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = count_jobs(config)
        (sweep_dir / SWEEP_PROGRESS).write_text(json.dumps({"start": time.time(), "total": total}) + "\n")
        print(f"sweep of {total} jobs -> {sweep_dir}", flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not in_multirun():
            return
        prefix = str(config.hydra.job.override_dirname) or f"job {config.hydra.job.num}"
        formatter = logging.Formatter(f"[{prefix}] %(message)s")
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setFormatter(formatter)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not in_multirun():
            return
        path = Path(str(config.hydra.runtime.output_dir)).parent / SWEEP_PROGRESS
        if not path.is_file():
            return  # a launcher that puts jobs elsewhere: no count to keep
        status = getattr(getattr(job_return, "status", None), "name", "?")
        _append(path, {"job": str(config.hydra.job.override_dirname), "status": status, "time": time.time()})
        rows = read_sweep_progress(path.parent)
        head = next((r for r in rows if "total" in r), None)
        if head is None:
            return
        done = sum(1 for r in rows if "job" in r and r["time"] >= head["start"])
        failed = "" if status == "COMPLETED" else f" ({status.lower()})"
        log.info(f"{progress_line(done, int(head['total']), time.time() - head['start'])} finished{failed}")
