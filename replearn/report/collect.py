"""Read every run of a sweep folder: config, status, final metrics, curves, analysis.

A run that never started (in the sweep's grid but without a folder) is
``missing``; one with a folder but no ``final.json`` is ``failed``; a
``diverged`` run keeps that status. None is dropped.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from replearn.errors import ReplearnError


@dataclass
class RunRecord:
    path: Path
    status: str  # ok | diverged | failed | missing
    variant: str
    depth: int
    seed: int
    model: str = ""
    final: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    analysis: dict | None = None
    error: str = ""

    @property
    def test_acc(self) -> float | None:
        return self.final.get("test_acc") if self.status == "ok" else None


def variant_name(model_cfg: dict, overrides: list | None = None) -> str:
    """The run's ``variant=`` override if it has one, else a name built from norm/residual/init."""
    for override in overrides or []:
        key, _, value = str(override).partition("=")
        if key.lstrip("+") == "variant" and value:
            return value
    norm = model_cfg.get("norm", "none")
    parts = (["residual"] if model_cfg.get("residual") else []) + ([norm] if norm != "none" else [])
    if model_cfg.get("init", "he") != "he":
        parts.append(f"{model_cfg['init']}_init")
    return "+".join(parts) or "plain"


def _read_yaml(path: Path) -> dict | None:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_run(path: Path) -> RunRecord | None:
    """One run folder, or None if the folder holds no run at all."""
    cfg = _read_yaml(path / "config.yaml") or _read_yaml(path / ".hydra" / "config.yaml")
    if cfg is None or "model" not in cfg:
        return None
    model_cfg = cfg["model"]
    depth = model_cfg.get("depth", cfg.get("depth"))
    if isinstance(depth, str):  # unresolved interpolation in .hydra/config.yaml
        depth = cfg.get("depth")
    final = _read_json(path / "final.json")
    metrics = []
    if (path / "metrics.jsonl").exists():
        for line in (path / "metrics.jsonl").read_text().splitlines():
            try:
                metrics.append(json.loads(line))
            except json.JSONDecodeError:
                break
    status = final.get("status", "failed") if final else "failed"
    return RunRecord(
        path=path, status=status, variant=variant_name(model_cfg, _read_yaml(path / ".hydra" / "overrides.yaml")), depth=int(depth), seed=int(cfg.get("seed", 0)),
        model=model_cfg.get("name", ""), final=final or {}, metrics=metrics,
        analysis=_read_json(path / "analysis.json"), error=(final or {}).get("error", ""),
    )


def expected_grid(sweep_dir: Path) -> list[dict[str, str]]:
    """The sweep's parameter combinations from Hydra's multirun.yaml (empty if unknown)."""
    multirun = _read_yaml(sweep_dir / "multirun.yaml") or {}
    params = dict(((multirun.get("hydra") or {}).get("sweeper") or {}).get("params") or {})
    for override in ((multirun.get("hydra") or {}).get("overrides") or {}).get("task") or []:
        key, _, value = str(override).partition("=")
        if "," in value and not key.startswith("hydra"):
            params[key] = value
    if not params:
        return []
    keys = sorted(params)
    values = [[v.strip() for v in str(params[k]).split(",")] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def collect_runs(sweep_dir: str | Path) -> list[RunRecord]:
    """Every run in ``sweep_dir`` plus a ``missing`` record for each grid point without a folder."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReplearnError(f"sweep={sweep_dir} is not a folder; pass a multirun folder or sweep=latest")
    records = []
    for path in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name != "depth_report"):
        record = read_run(path)
        if record is not None:
            records.append(record)
    seen = {(r.variant, r.depth, r.seed) for r in records}
    for point in expected_grid(sweep_dir):
        variant = point.get("variant", records[0].variant if records else "plain")
        key = (variant, int(point.get("depth", 0)), int(point.get("seed", 0)))
        if key not in seen and "depth" in point:
            records.append(RunRecord(path=sweep_dir / "(not started)", status="missing", variant=key[0],
                                     depth=key[1], seed=key[2]))
            seen.add(key)
    if not records:
        raise ReplearnError(f"no runs found in {sweep_dir}; run a sweep first (python scripts/train.py -m experiment=depth_mlp)")
    return sorted(records, key=lambda r: (r.variant, r.depth, r.seed))


def resolve_sweep_dir(spec: str, root: str | Path = "multirun") -> Path:
    """A sweep folder, or ``latest``: the most recently modified folder under ``root`` holding a multirun.yaml."""
    if spec != "latest":
        return Path(spec).expanduser()
    candidates = [p.parent for p in Path(root).glob("**/multirun.yaml")]
    if not candidates:
        raise ReplearnError(f"sweep=latest found no sweep under {Path(root).resolve()}; run one first "
                            "(python scripts/train.py -m experiment=depth_mlp) or pass sweep=<folder>")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def as_row(record: RunRecord) -> dict[str, Any]:
    """A flat summary.csv row."""
    return {
        "variant": record.variant, "depth": record.depth, "seed": record.seed, "status": record.status,
        "test_acc": record.final.get("test_acc"), "best_val_acc": record.final.get("best_val_acc"),
        "epochs": record.final.get("epochs_completed"), "params": record.final.get("params"),
        "wall_seconds": record.final.get("wall_seconds"), "run": record.path.name, "error": record.error,
    }
