"""What a training run carries from epoch to epoch, and what its checkpoint holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from replearn.models import LayeredModel
from replearn.training.optim import replan_schedule
from replearn.training.resume import ResumePlan


@dataclass
class TrainState:
    """The model, its optimizer and lr schedule, the shuffle generator and where the run is."""

    model: LayeredModel
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch lr scheduler, or None for a constant lr
    shuffle_gen: torch.Generator
    device: torch.device
    epoch: int = 0  # the last finished epoch
    extra: dict = field(default_factory=dict)  # the first step's loss, gradient norms at the start and now

    def checkpoint(self, cfg: DictConfig) -> dict:
        """The checkpoint of the run after ``self.epoch``."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": self.shuffle_gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "config": OmegaConf.to_container(cfg, resolve=True),
            "extra": self.extra,
        }

    def restore(self, cfg: DictConfig, saved: dict, plan: ResumePlan, steps_per_epoch: int) -> None:
        """Continue from a checkpoint (``saved``).

        Unchanged settings restore the optimizer and scheduler exactly (bit-identical continuation).
        Re-planned settings (replearn.training.resume) keep the optimizer's moments, take the new
        hyper-parameters, and rebuild the lr schedule for the new plan, stepped to where the run is.
        """
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if plan.replan:
            total = steps_per_epoch * cfg.trainer.epochs
            schedule = saved.get("scheduler") or {}
            done = schedule.get("last_epoch", saved["epoch"] * steps_per_epoch)
            self.scheduler = replan_schedule(cfg, self.optimizer, total, done)
        elif self.scheduler is not None and saved["scheduler"] is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"]["torch"].cpu())
        self.shuffle_gen.set_state(saved["rng"]["shuffle"].cpu())
        if saved["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in saved["rng"]["cuda"]])
        self.epoch = saved["epoch"]
        self.extra = dict(saved.get("extra") or {})
