"""The Hydra job this process is running (inside ``@hydra.main``): its folder, its config, single run or sweep."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

#: Run and sweep folders that existed before this command's Hydra started (resolved paths, as text), noted
#: by :func:`replearn.cli.check.check_output_dirs`: a failed job never removes one of them.
EXISTING: set[str] = set()


def hydra_output_dir() -> Path:
    """The current Hydra job's output directory."""
    return Path(HydraConfig.get().runtime.output_dir)


def config_name() -> str | None:
    """The running job's top-level config (``train``, ``visualize``, ...), or None outside a Hydra job."""
    return HydraConfig.get().job.config_name if HydraConfig.initialized() else None


def in_multirun() -> bool:
    """True in a job of a sweep (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
