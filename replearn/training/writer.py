"""Everything a training run writes into its folder: config, metrics rows, final.json, curves."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from replearn.models import count_parameters
from replearn.runs.atomic import atomic_write, atomic_write_json
from replearn.runs.layout import ANALYSIS, CONFIG, CONFIG_HISTORY, CURVES, FINAL, METRICS, RESUMES, read_metrics
from replearn.training.resume import Start, record_resume


class RunWriter:
    """Everything a run writes into its folder."""

    def __init__(self, output_dir: Path):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / METRICS

    def write_config(self, cfg: DictConfig) -> None:
        atomic_write(self.dir / CONFIG, lambda handle: handle.write(OmegaConf.to_yaml(cfg, resolve=True)))

    def read_metrics(self) -> list[dict]:
        """The epoch rows written so far (replearn.runs.layout.read_metrics)."""
        return read_metrics(self.dir)

    def truncate_metrics(self, last_epoch: int) -> list[dict]:
        """Keep the metrics of epochs <= last_epoch (those the checkpoint has seen)."""
        kept = [m for m in self.read_metrics() if m["epoch"] <= last_epoch]
        atomic_write(self.metrics_path, lambda handle: handle.write("".join(json.dumps(m) + "\n" for m in kept)))
        return kept

    def begin_fresh(self) -> None:
        """Start over: results and resume records of an earlier run in this folder go (trainer.force=true)."""
        for name in (FINAL, ANALYSIS, RESUMES):
            (self.dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.dir / CONFIG_HISTORY, ignore_errors=True)
        self.truncate_metrics(0)

    def begin_resume(self, start: Start) -> None:
        """Record the resume (changes, the replaced config, earlier results); results the run will redo go."""
        config = self.dir / CONFIG
        old_text = config.read_text(errors="replace") if config.is_file() else None
        record_resume(start.plan, old_text, start.final)
        for name in (FINAL, ANALYSIS):
            (self.dir / name).unlink(missing_ok=True)

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def write_final(self, final: dict) -> None:
        atomic_write_json(self.dir / FINAL, final, indent=2)

    def write_curves(self, metrics: list[dict], title: str) -> None:
        # lazy: replearn.viz imports matplotlib (0.3 s at start-up); only the end of a run draws curves
        from replearn.viz.curves import plot_training_curves

        if metrics:
            # None (nothing measured, e.g. data.val_size=0) is drawn as a gap.
            rows = [{k: math.nan if v is None else v for k, v in m.items()} for m in metrics]
            plot_training_curves(rows, title=title).savefig(self.dir / CURVES)


def clean_stale_temp(run_dir: Path) -> None:
    """Remove temp files of atomic writes a killed process left behind (only the folder's owner calls this)."""
    for path in Path(run_dir).glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)


def final_summary(cfg, model, metrics: list[dict], wall_start: float, status: str, extra: dict) -> dict:
    """The contents of ``final.json`` (the caller adds test results or the error)."""
    measured = [m for m in metrics if m.get("val_acc") is not None]
    best = max(measured, key=lambda m: m["val_acc"]) if measured else None
    return {
        "status": status,
        "model": cfg.model.name,
        "depth": cfg.model.depth,
        "seed": cfg.seed,
        "params": count_parameters(model),
        # The last epoch's number, not the row count: a torn row dropped from metrics.jsonl is not an epoch less.
        "epochs_completed": int(metrics[-1]["epoch"]) if metrics else 0,
        "val_acc": metrics[-1]["val_acc"] if metrics else None,
        "best_val_acc": best["val_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "train_seconds": sum(m["epoch_seconds"] for m in metrics),
        "wall_seconds": time.perf_counter() - wall_start,
        "grad_norms_init": extra.get("grad_norms_init"),
        "grad_norms_final": extra.get("grad_norms_final"),
    }
