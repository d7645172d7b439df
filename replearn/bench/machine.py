"""How busy the machine was around a benchmark suite, so its figures are read for what they are.

A suite's figures mean little when other processes took the cores. Two signals, both printed:
- the 1-minute load average before and after the suite: above the machine's core count, more
  threads wanted to run than there were cores, so some of them (maybe the suite's) waited;
- a float32 matmul probe (:func:`matmul_gflops`) on the suite's thread count, against a quiet
  reference: the fastest probe this bench has measured on this CPU with that thread count while the
  load average stayed within the core count, kept in the per-user cache
  (``<cache>/bench/matmul_reference.json``). The machine's own best is used rather than a fixed
  number because a constant measured on one machine (the README's CI machine) says nothing about
  another; the best ever seen is the closest thing to a quiet reading, and it only grows more
  reliable with every run. Below half of it, the CPU was clearly shared.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import torch

from replearn.cache import cache_dir
from replearn.runs.atomic import atomic_write_json

BUSY_LINE = "machine busy: figures not representative"
#: A probe below this fraction of the quiet reference marks the machine busy.
PROBE_FRACTION = 0.5


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Median float32 GFLOP/s of ``repeats`` square matmuls now: how much of the CPU this process gets."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def thread_count(figures: dict) -> int:
    """The torch threads the suite used: its own ``threads`` figure when it reports one, else torch's count now."""
    reported = figures.get("threads")
    if isinstance(reported, bool):
        reported = None
    if isinstance(reported, int):
        return reported
    if isinstance(reported, str) and reported.split(" ", 1)[0].isdigit():  # e.g. "1 torch thread (auto: ...)"
        return int(reported.split(" ", 1)[0])
    parts = reported.replace(",", " ").split() if isinstance(reported, str) else []
    if parts and all(part.isdigit() for part in parts):  # "1, 2": several counts measured
        return max(map(int, parts))
    return torch.get_num_threads()


def _reference_path():
    return cache_dir("bench") / "matmul_reference.json"


def quiet_reference(cpu: str, threads: int, gflops: float, record: bool = True) -> float | None:
    """The best probe seen before on ``cpu`` with ``threads`` (None the first time); records ``gflops`` if ``record``."""
    path, key = _reference_path(), f"{cpu} | {threads} threads"
    try:
        table = json.loads(path.read_text())
        if not isinstance(table, dict):
            table = {}
    except (OSError, ValueError):
        table = {}
    best = table.get(key)
    best = float(best) if isinstance(best, (int, float)) else None
    if record and (best is None or gflops > best):
        table[key] = gflops
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, table, indent=2)
        except OSError:
            pass  # a read-only cache only costs the reference, never the suite's figures
    return best


def busy_reasons(load_before: float | None, load_after: float | None, cores: int,
                 probe: float | None, reference: float | None) -> list[str]:
    """Why the figures are not representative (empty when nothing says so)."""
    reasons = []
    for when, load in (("before", load_before), ("after", load_after)):
        if load is not None and load > cores:
            reasons.append(f"load average {load:.2f} {when} the suite exceeds the {cores} cores")
    if probe is not None and reference is not None and probe < PROBE_FRACTION * reference:
        reasons.append(f"matmul probe {probe:.1f} GFLOP/s is below {PROBE_FRACTION:g} of the quiet reference "
                       f"{reference:.1f}")
    return reasons


def describe_load(cpu: str, figures: dict, load_before: float | None, probe_gflops) -> dict:
    """Figures on the machine's state after the suite: threads used, load averages, probe, verdict.

    ``probe_gflops(threads)`` measures the matmul probe on that many threads (injected so tests stay fast).
    """
    threads = thread_count(figures)
    load_after = load_average()
    cores = os.cpu_count() or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        probe = float(probe_gflops(threads))
    finally:
        torch.set_num_threads(before)
    # Only a probe taken while the load stayed within the cores may become the quiet reference.
    loaded = busy_reasons(load_before, load_after, cores, None, None)
    reference = quiet_reference(cpu, threads, probe, record=not loaded)
    shown = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    out = {
        "threads_used": threads,
        "load_average_1min": f"{shown(load_before)} before, {shown(load_after)} after ({cores} cores)",
        "matmul_probe_gflops": probe,
        "matmul_quiet_reference_gflops": reference if reference is not None else "none yet (first probe here)",
    }
    reasons = busy_reasons(load_before, load_after, cores, probe, reference)
    if reasons:
        out["busy"] = f"{BUSY_LINE} ({'; '.join(reasons)})"
    return out
