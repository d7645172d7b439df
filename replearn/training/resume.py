"""What may change when a run is resumed, and how each change is recorded.

Rule (also in the README):

* **Fixed for the life of a run**: the model, the data (except where it lives:
  ``data.root``, ``data.download``), ``seed``, ``optim.name`` and ``trainer.batch_size``.
  Changing one refuses with one line and touches nothing.
* **Re-planned**: ``trainer.epochs``, ``trainer.schedule``, ``trainer.warmup_fraction`` and
  the optimizer's hyper-parameters (``optim.lr``, betas, momentum, weight decay). The
  optimizer keeps its state (moments), takes the new hyper-parameters, and the learning-rate
  schedule is rebuilt for the new plan and stepped to where the run is: every remaining step
  gets the lr the new settings give at that step. Extending a finished one-cycle run therefore
  continues the longer cycle; a lower ``optim.lr`` after a divergence is the lr that is used.
* **Anything else** (label smoothing, evaluation batch, analysis settings, ...) takes effect
  from the next epoch.
* Without changes the optimizer and scheduler states are restored exactly, so an interrupted
  run resumed as it was is bit-identical to an uninterrupted one.

Every resume appends a row to ``<run>/resumes.jsonl`` (epoch, changes, previous results);
before a changed config replaces ``config.yaml``, the previous one is kept in
``<run>/config_history/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from replearn.errors import ReplearnError
from replearn.runs.atomic import atomic_write
from replearn.runs.checkpoint import load_checkpoint
from replearn.runs.layout import CHECKPOINT, CONFIG_HISTORY, RESUMES, read_config, read_final

# Where a run's files are, how it is shown and run, and how to start it: not part of what it is.
IGNORED = ("trainer.resume", "trainer.force", "trainer.force_resources", "trainer.progress", "trainer.threads",
           "data.root", "data.download", "device")
FIXED = ("model.", "data.", "depth", "seed", "optim.name", "trainer.batch_size")
REPLANNED = ("trainer.epochs", "trainer.schedule", "trainer.warmup_fraction", "optim.")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs between two resolved configs (paths and run-control keys ignored)."""
    a, b = flatten(old), flatten(new)
    # A key the saved config lacks was added to the schema after the run started; its default keeps
    # the old behaviour (e.g. model.num_classes: 10), so it is not a change of the run's settings.
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k in a and a.get(k) != b.get(k) and not matches(k, IGNORED)}


def describe_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())


@dataclass
class ResumePlan:
    """How a resume continues: the changes, and whether the lr schedule is rebuilt."""

    run_dir: Path
    after_epoch: int
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def replan(self) -> bool:
        return any(matches(k, REPLANNED) for k in self.changes)


def plan_resume(run_dir: Path, saved_cfg: Mapping[str, Any], new_cfg: Mapping[str, Any], after_epoch: int) -> ResumePlan:
    """Compare the checkpoint's config with the new one; ReplearnError (one line) if the change is not allowed."""
    changes = config_changes(saved_cfg, new_cfg)
    fixed = {k: v for k, v in changes.items() if matches(k, FIXED)}
    if fixed:
        raise ReplearnError(
            f"cannot resume {run_dir}: it was trained with different fixed settings ({describe_changes(fixed)}); "
            "the model, data, seed, optimizer type and batch size cannot change within a run: drop those "
            "overrides to continue it, or start a new run"
        )
    epochs = new_cfg["trainer"]["epochs"]
    if epochs < after_epoch:
        raise ReplearnError(f"cannot resume {run_dir} with trainer.epochs={epochs}: its checkpoint already has "
                            f"{after_epoch} epochs; pass trainer.epochs={after_epoch} or more")
    return ResumePlan(Path(run_dir), after_epoch, changes)


def record_resume(plan: ResumePlan, old_config_text: str | None, previous_final: dict | None) -> None:
    """Append the resume to resumes.jsonl; keep the replaced config.yaml in config_history/ if it changes."""
    row: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "after_epoch": plan.after_epoch,
        "changes": {k: [old, new] for k, (old, new) in plan.changes.items()},
        "schedule": "re-planned" if plan.replan else "restored",
    }
    if plan.changes and old_config_text is not None:
        history = plan.run_dir / CONFIG_HISTORY
        history.mkdir(exist_ok=True)
        kept = history / f"config.{len(list(history.glob('config.*.yaml')))}.yaml"
        atomic_write(kept, lambda handle: handle.write(old_config_text))
        row["previous_config"] = str(kept.relative_to(plan.run_dir))
    if previous_final:
        row["previous_final"] = {k: previous_final.get(k) for k in
                                 ("status", "epochs_completed", "test_acc", "test_loss", "error") if k in previous_final}
    path = plan.run_dir / RESUMES
    # A kill mid-append leaves a torn last line; start on a fresh line so this row stays readable.
    torn = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as handle:
        handle.write(("\n" if torn else "") + json.dumps(row) + "\n")


@dataclass
class Start:
    """How a training call starts in its run folder: ``fresh``, ``resume`` (with the checkpoint) or ``skip``."""

    kind: str
    final: dict | None = None
    state: dict | None = None
    plan: ResumePlan | None = None
    message: str = ""


def load_resume_state(run_dir: Path) -> dict:
    """The checkpoint of ``run_dir``, checked to be one training can continue from; ReplearnError (one line) if not."""
    checkpoint = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ReplearnError(f"{checkpoint} is not a replearn checkpoint (no config); {start_over(run_dir)}")
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ReplearnError(f"{checkpoint} is damaged: its epoch is {epoch!r}, not a count of finished epochs; "
                            f"{start_over(run_dir)}")
    return state


def prepare_start(cfg, run_dir: Path) -> Start:
    """Decide how ``train`` starts in ``run_dir``; reads only, so a refusal (ReplearnError) changes nothing.

    A finished run with the same settings is skipped; with other settings it is refused (extend it
    with ``trainer.resume``). An unfinished run with a checkpoint continues from it (a sweep job that
    was killed), under the resume rule above; ``trainer.force=true`` starts over (refused together
    with ``trainer.resume``, which continues).
    """
    run_dir = Path(run_dir)
    explicit = bool(cfg.trainer.resume)
    if cfg.trainer.force and explicit:
        raise ReplearnError(force_and_resume(run_dir))
    if cfg.trainer.force:
        return Start("fresh")
    new = OmegaConf.to_container(cfg, resolve=True)
    final = read_final(run_dir)
    status = final.get("status") if final else None
    checkpoint = run_dir / CHECKPOINT
    if status in ("ok", "diverged") and not explicit:
        saved = read_config(run_dir)
        changes = config_changes(saved, new) if saved else {}
        if (changes or saved is None) and checkpoint.is_file():
            # config.yaml may be damaged (binary, depth: null): the checkpoint's copy has the last word.
            try:
                stored = load_checkpoint(checkpoint).get("config")
            except ReplearnError:
                stored = None
            if isinstance(stored, dict) and not config_changes(stored, new):
                changes = {}
        if changes:
            raise ReplearnError(
                f"{run_dir} already holds a finished run ({status}) with other settings ({describe_changes(changes)}); "
                f"to continue it with them pass trainer.resume={run_dir}, or pass trainer.force=true to re-run it from scratch"
            )
        return Start("skip", final=final, message=f"skipping {run_dir}: already finished ({status}); "
                                                  "pass trainer.force=true to re-run")
    if not checkpoint.is_file():
        if explicit:  # a run that lost its checkpoint since resume_target looked
            raise ReplearnError(f"no checkpoint in {run_dir}, so there is nothing to resume; start a new run instead")
        return Start("fresh")
    try:
        state = load_resume_state(run_dir)
    except ReplearnError as exc:
        if explicit or "trainer.force=true" in str(exc):
            raise
        raise ReplearnError(f"{exc}; {start_over(run_dir)}") from None
    plan = plan_resume(run_dir, state["config"], new, state["epoch"])
    if status == "ok" and state["epoch"] >= new["trainer"]["epochs"]:
        return Start("skip", final=final, message=f"{run_dir} already finished all {state['epoch']} epochs; "
                                                  f"pass trainer.epochs={state['epoch'] + 1} or more to extend it")
    return Start("resume", final=final, state=state, plan=plan)


def start_over(run_dir: Path | str) -> str:
    """How to start the run in ``run_dir`` over (its checkpoint cannot be continued)."""
    return f"to start this run over: python scripts/train.py hydra.run.dir={run_dir} trainer.force=true"


def force_and_resume(run_dir: Path | str) -> str:
    """The refusal of ``trainer.force=true`` with ``trainer.resume`` (one starts over, the other continues)."""
    return (f"trainer.force=true starts a run over and trainer.resume continues it: pass one of them "
            f"(to start {run_dir} over: python scripts/train.py hydra.run.dir={run_dir} trainer.force=true)")


def resume_target(spec: str) -> Path:
    """The run folder ``trainer.resume`` names (a folder or its checkpoint.pt); one line if there is nothing to resume.

    Only reads: a file that is not a checkpoint, a folder without one or a path that does not exist
    is refused before anything is written anywhere.
    """
    path = Path(str(spec)).expanduser()
    if path.is_file():
        if path.name != CHECKPOINT:
            raise ReplearnError(f"trainer.resume={spec} is a file, not a run: pass the run folder that holds "
                                f"{CHECKPOINT} (here {path.parent}, if that is the run)")
        return path.parent
    if not path.is_dir():
        raise ReplearnError(f"trainer.resume={spec} does not exist; pass a run folder written by scripts/train.py")
    final = read_final(path)
    if not (path / CHECKPOINT).is_file():
        if final:
            raise ReplearnError(f"{path} {final.get('status')} before its first checkpoint, so there is nothing to "
                                "resume; start a new run instead (with a lower optim.lr if it diverged)")
        raise ReplearnError(f"trainer.resume={spec}: no {CHECKPOINT} in {path}, so it is not a run that can be "
                            "resumed; pass a run folder written by scripts/train.py")
    return path
