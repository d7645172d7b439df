"""Schema of scripts/trace.py."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class TraceConfig:
    # A YAML network file; default: configs/networks/course_example.yaml.
    network: str | None = None
    # A run folder (or "latest") to trace one test image through a trained model instead.
    run: str | None = None
    image_index: int = 0
    top_units: int = 5
    draw: bool = True


ConfigStore.instance().store(name="trace_schema", node=TraceConfig)
