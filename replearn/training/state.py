"""What a training run carries from epoch to epoch, and what its checkpoint holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from replearn.errors import ReplearnError
from replearn.models import LayeredModel
from replearn.training.optim import replan_schedule
from replearn.training.resume import ResumePlan, start_over


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

    def restore(self, cfg: DictConfig, saved: dict, plan: ResumePlan, steps_per_epoch: int | None) -> None:
        """Continue from a checkpoint (``saved``); ReplearnError (one line) if this version cannot continue it.

        Unchanged settings restore the optimizer and scheduler exactly (bit-identical continuation).
        Re-planned settings (replearn.training.resume) keep the optimizer's moments, take the new
        hyper-parameters, and rebuild the lr schedule for the new plan, stepped to where the run is.
        Touches nothing on disk: the caller changes the run folder only once this has succeeded.
        ``steps_per_epoch=None`` checks the model, optimizer and RNG states only (a dry run).
        """
        try:
            self._restore(cfg, saved, plan, steps_per_epoch)
        except ReplearnError:
            raise
        except Exception as exc:  # the checkpoint comes from a file: any mismatch is one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ReplearnError(f"cannot resume {plan.run_dir}: its checkpoint does not fit this version of replearn "
                                f"({type(exc).__name__}: {first[:200]}); nothing was changed; "
                                f"{start_over(plan.run_dir)}") from None

    def _restore(self, cfg: DictConfig, saved: dict, plan: ResumePlan, steps_per_epoch: int | None) -> None:
        rng = saved["rng"]
        torch.Generator().set_state(rng["torch"].cpu())  # both checked before anything is set
        torch.Generator().set_state(rng["shuffle"].cpu())
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        schedule = saved.get("scheduler") or {}
        done, planned = schedule.get("last_epoch", 0), schedule.get("total_steps")
        if not isinstance(done, int) or done < 0 or (isinstance(planned, int) and done > planned):
            raise ValueError(f"its lr schedule is at step {done!r} of {planned!r}")
        if steps_per_epoch is None:  # a dry run (check_restorable): no data loaded, so no steps per epoch yet
            return
        done = schedule.get("last_epoch", saved["epoch"] * steps_per_epoch)
        if done > saved["epoch"] * steps_per_epoch:
            raise ValueError(f"its lr schedule is at step {done} after {saved['epoch']} epochs of {steps_per_epoch} steps")
        if plan.replan:
            total = steps_per_epoch * cfg.trainer.epochs
            self.scheduler = replan_schedule(cfg, self.optimizer, total, done)
        elif self.scheduler is not None and saved["scheduler"] is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(rng["torch"].cpu())
        self.shuffle_gen.set_state(rng["shuffle"].cpu())
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        self.epoch = saved["epoch"]
        self.extra = dict(saved.get("extra") or {})
