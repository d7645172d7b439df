"""Run folders: their file names and readers (layout), loading a finished run, checkpoints, the lock, atomic writes.

The names below load on first use (PEP 562), so ``replearn.runs.layout`` stays light: importing it
does not import torch (the command line's checks read run folders before anything trains).
"""

from __future__ import annotations

import importlib

_EXPORTS = {"LoadedRun": "replearn.runs.load", "latest_run": "replearn.runs.load", "load_run": "replearn.runs.load",
            "resolve_run_dir": "replearn.runs.load"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'replearn.runs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
