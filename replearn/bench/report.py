"""Run one benchmark suite, print its figures and save them as JSON."""

from __future__ import annotations

import importlib
import json
import platform
from pathlib import Path

import torch
from omegaconf import DictConfig

from replearn.errors import ReplearnError

SUITES = ("train", "viz", "analysis", "dissection", "threads", "loggers")


def machine() -> str:
    """A short description of the machine the figures come from."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


def run_suite(cfg: DictConfig, output_dir: Path) -> dict:
    """Run ``cfg.suite`` and print ``name: value`` lines; write ``bench.json`` into output_dir."""
    if cfg.suite not in SUITES:
        raise ReplearnError(f"suite={cfg.suite!r} is invalid: choose one of {', '.join(SUITES)}")
    module = importlib.import_module(f"replearn.bench.{cfg.suite}")
    figures = {"machine": machine(), **module.run(cfg)}
    width = max(len(k) for k in figures)
    print(f"== bench suite={cfg.suite} ==")
    for key, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "bench.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures
