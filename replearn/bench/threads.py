"""Thread-count benchmark: MLP training steps with trainer.threads auto vs 1 vs 2, with and without
one competing CPU-bound process (``python scripts/bench.py suite=threads``).

The competitor is a Python busy loop started here and stopped at the end. Other processes on the
machine (other users, CI jobs) also take CPU: each row reports how many cores they used while it
ran (measured from /proc/stat), so a noisy figure can be told from a slow setting.
"""

from __future__ import annotations

import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from replearn.device import CpuMeter, resolve_threads
from replearn.models import build_model

#: Issue target: the default on a machine with one competing process within this factor of quiet.
TARGET_BUSY_RATIO = 1.5
SETTINGS = ("auto", 1, 2)


def _steps_seconds(model, optimizer, x, y, steps: int) -> float:
    """Seconds for ``steps`` forward/backward/Adam steps on one batch (after one warm-up step)."""
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def _competitor() -> subprocess.Popen:
    """One CPU-bound process (a Python busy loop), like a second job on the machine."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run(cfg: DictConfig) -> dict:
    """Time ``steps`` MLP steps per thread setting, quiet and with one competitor; return the table."""
    steps = int(cfg.get("steps", 40)) if hasattr(cfg, "get") else 40
    torch.manual_seed(0)
    model = build_model(name="mlp", depth=int(cfg.model.depth), width=int(cfg.model.width))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(cfg.trainer.batch_size, 1, 28, 28)  # (B, 1, 28, 28)
    y = torch.randint(0, 10, (cfg.trainer.batch_size,))
    before = torch.get_num_threads()
    out: dict = {"workload": f"{steps} steps of MLP depth={cfg.model.depth} width={cfg.model.width}, "
                             f"batch {cfg.trainer.batch_size}, Adam"}
    seconds: dict[tuple[str, str], float] = {}
    try:
        for machine in ("quiet", "one competitor"):
            competitor = _competitor() if machine != "quiet" else None
            try:
                if competitor is not None:
                    time.sleep(1.0)  # let it take its core before the auto choice looks
                for setting in SETTINGS:
                    policy = resolve_threads(0 if setting == "auto" else int(setting))
                    meter = CpuMeter()
                    secs = _steps_seconds(model, optimizer, x, y, steps)
                    others = meter.others()
                    seconds[(machine, str(setting))] = secs
                    load = f"{others:.1f}" if others is not None else "?"
                    out[f"{machine:<14} threads={setting!s:<4}"] = (
                        f"{secs:6.2f} s  ({policy.threads} thread{'s' if policy.threads != 1 else ''}; "
                        f"other processes used {load} cores meanwhile)"
                    )
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
    finally:
        torch.set_num_threads(before)
    ratio = seconds[("one competitor", "auto")] / seconds[("quiet", "auto")]
    out["auto: competitor / quiet"] = round(ratio, 2)
    out["2 threads: competitor / quiet"] = round(seconds[("one competitor", "2")] / seconds[("quiet", "2")], 2)
    out["target_busy_ratio"] = TARGET_BUSY_RATIO
    out["busy_ratio_ok"] = ratio <= TARGET_BUSY_RATIO
    out["note"] = "the machine is shared: 'quiet' means no competitor started by the bench, not an idle machine"
    return out
