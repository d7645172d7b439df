"""Run one benchmark suite, print its figures and save them as JSON."""

from __future__ import annotations

import importlib
import json
import os
import platform
from pathlib import Path

import torch
from omegaconf import DictConfig

from replearn.bench.machine import describe_load, load_average, matmul_gflops
from replearn.errors import ReplearnError

SUITES = ("train", "viz", "analysis", "dissection", "page", "threads", "loggers", "gpu", "peers")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def machine(threads: int | None = None) -> str:
    """A short description of the machine the figures come from; ``threads``: those the suite used."""
    threads = torch.get_num_threads() if threads is None else threads
    return f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {threads} thread{'s' if threads != 1 else ''}"


def _probe(threads: int) -> float:
    """The busy check's probe (the caller has set torch to ``threads`` threads)."""
    return matmul_gflops()


def run_suite(cfg: DictConfig, output_dir: Path) -> dict:
    """Run ``cfg.suite`` and print ``name: value`` lines; write ``bench.json`` into output_dir."""
    if cfg.suite not in SUITES:
        raise ReplearnError(f"suite={cfg.suite!r} is invalid: choose one of {', '.join(SUITES)}")
    module = importlib.import_module(f"replearn.bench.{cfg.suite}")
    skip = getattr(module, "skip_reason", None)
    reason = skip() if skip is not None else None
    if reason:  # e.g. suite=gpu without a GPU: one line, nothing measured, nothing written
        print(reason)
        return {"skipped": reason}
    load_before = load_average()
    results = module.run(cfg)
    # Threads, load and the probe are read after the suite: what it actually ran on.
    state = describe_load(cpu_name(), results, load_before, _probe)
    figures = {"machine": machine(state["threads_used"]), **results, **state}
    width = max(len(k) for k in figures)
    print(f"== bench suite={cfg.suite} ==")
    for key, value in figures.items():
        if key == "busy":
            continue
        shown = f"{value:,.3f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if "busy" in figures:
        print(figures["busy"])
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "bench.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    table = getattr(module, "markdown", None)
    if table is not None:  # a suite whose figures make a README table (suite=peers)
        path = Path(output_dir) / "table.md"
        path.write_text(table(figures))
        print(f"markdown table for the README: {path}")
    return figures
