"""The training loop: tensors on the device, seeded shuffles, resumable, one run folder per run."""

from __future__ import annotations

import errno
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from replearn.data import Splits, load_splits
from replearn.device import autocast_dtype, resolve_device, resolve_threads, seed_everything, thread_dependence
from replearn.errors import ReplearnError
from replearn.guards import check_images, check_training
from replearn.models import LayeredModel, build_model_from_config, count_parameters
from replearn.progress import progress
from replearn.runs.checkpoint import load_checkpoint, save_checkpoint
from replearn.runs.layout import ANALYSIS, CHECKPOINT
from replearn.runs.lock import RunLock
from replearn.training.augment import draw_shifts, shift_images
from replearn.training.divergence import Diverged, divergence_advice, exploded
from replearn.training.loggers import build_loggers, console_logging
from replearn.training.optim import build_optimizer, build_scheduler
from replearn.training.resume import Start, describe_changes, prepare_start, resume_target
from replearn.training.state import TrainState
from replearn.training.writer import RunWriter, clean_stale_temp, final_summary

__all__ = ["Diverged", "TrainState", "build_training_model", "evaluate", "exploded", "train", "train_epoch"]

log = logging.getLogger(__name__)


def build_training_model(cfg: DictConfig, device: torch.device) -> LayeredModel:
    """The configured model on ``device``, in the memory format it trains fastest in."""
    model = build_model_from_config(cfg.model).to(device)
    return model.to(memory_format=model.training_memory_format)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, splits: Splits,
             batch_size: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on uint8 ``images``."""
    was_training = model.training
    model.eval()
    loss_sum, correct = torch.zeros((), device=images.device), torch.zeros((), device=images.device)
    for start in range(0, len(images), batch_size):
        x = splits.normalize(images[start:start + batch_size])
        y = labels[start:start + batch_size]
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = max(len(images), 1)
    return float(loss_sum) / n, float(correct) / n


def block_grad_norms(model: LayeredModel) -> dict[str, float]:
    """L2 norm of each block's weight gradient (and the head's), in forward order."""
    norms = {}
    for name in model.layer_names():
        module = model.get_submodule(name)
        weight = module.weight if name == "head" else next(
            m.weight for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
        )
        norms[name] = float(weight.grad.norm()) if weight.grad is not None else 0.0
    return norms


def describe(cfg: DictConfig) -> str:
    m = cfg.model
    extras = [x for x in (m.norm if m.norm != "none" else "", "residual" if m.residual else "") if x]
    return f"{m.name.upper()} depth={m.depth}" + (f" ({', '.join(extras)})" if extras else "") + f" on {cfg.data.name}"


def train(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Train the configured model; write config, metrics, checkpoint, curves and final.json into a run folder.

    Returns the contents of ``final.json``. Everything is checked before the folder is touched: a
    refusal (ReplearnError, one line) leaves it exactly as it was.
    """
    console_logging()
    output_dir = Path(output_dir)
    if cfg.trainer.resume:
        # Resuming continues in the original run folder so its files stay together.
        output_dir = resume_target(cfg.trainer.resume)
    check_training(cfg)  # the resource guard: arithmetic on the config, before anything is allocated
    start = prepare_start(cfg, output_dir)  # read-only first: a refusal leaves the folder exactly as it was
    if start.kind == "resume":
        check_restorable(cfg, start)
    with RunLock(output_dir):
        # Decided again under the lock: another process may have changed the folder meanwhile.
        start = prepare_start(cfg, output_dir)
        if start.kind == "skip":
            log.info(start.message)
            clean_stale_temp(output_dir)
            if start.final.get("status") == "ok" and cfg.analysis.enabled and not (output_dir / ANALYSIS).is_file():
                log.info(f"{output_dir} has no {ANALYSIS} (stopped before it was written): completing it")
                _analysis_threads(cfg, output_dir)  # as after training: same numbers
                _maybe_analyze(cfg, output_dir)
            return start.final
        clean_stale_temp(output_dir)
        try:
            return _train_locked(cfg, output_dir, start)
        except OSError as exc:  # a full disk, ulimit -f, a folder made read-only mid-run
            saved = (output_dir / CHECKPOINT).is_file()
            fix = ("free disk space or raise the file size limit (ulimit -f)" if exc.errno in (errno.ENOSPC, errno.EFBIG)
                   else "free disk space or fix the permissions")
            raise ReplearnError(
                f"cannot write {exc.filename or output_dir}: {exc.strerror or exc}; {fix}, then "
                + (f"continue with trainer.resume={output_dir}" if saved else "run again")
            ) from None


def check_restorable(cfg: DictConfig, start: Start) -> None:
    """Restore ``start``'s checkpoint into a throwaway model and optimizer; ReplearnError (one line) if it does not fit.

    A checkpoint of an older layout (renamed weights, no RNG states) is refused here, before the lock
    is taken and before anything in the folder is rewritten.
    """
    model = build_model_from_config(cfg.model)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    TrainState(model, optimizer, None, torch.Generator(), torch.device("cpu")).restore(cfg, start.state, start.plan, None)


def _pinned_threads(extra: dict | None) -> int | None:
    """The thread count a checkpoint recorded (runs whose numbers depend on it), or None."""
    threads = (extra or {}).get("threads")
    return threads if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else None


def _analysis_threads(cfg: DictConfig, output_dir: Path) -> None:
    """Threads for completing a finished run's analysis: the run's own count where its numbers depend on it."""
    device = resolve_device(cfg.device)
    model = build_model_from_config(cfg.model)
    depends = thread_dependence(model, device)
    pinned = None
    if depends is not None:
        try:
            pinned = _pinned_threads(load_checkpoint(output_dir / CHECKPOINT).get("extra"))
        except (ReplearnError, AttributeError):
            pinned = None
    resolve_threads(cfg.trainer.threads, device, depends=depends, pinned=pinned)


def _train_locked(cfg: DictConfig, output_dir: Path, start: Start) -> dict:
    """The training itself, in a run folder this process owns."""
    wall_start = time.perf_counter()
    device = resolve_device(cfg.device)
    shuffle_gen = seed_everything(cfg.seed)
    model = build_training_model(cfg, device)
    # Auto threads follow the load only where the count cannot change the numbers; otherwise the run
    # keeps one count, recorded in its checkpoint and reused on resume.
    saved_extra = start.state.get("extra") if start.kind == "resume" else None
    threads = resolve_threads(cfg.trainer.threads, device, depends=thread_dependence(model, device),
                              pinned=_pinned_threads(saved_extra if isinstance(saved_extra, dict) else None))
    splits = check_images(load_splits(cfg.data), cfg.data).to(device)
    writer = RunWriter(output_dir)

    steps_per_epoch = math.ceil(len(splits.train_x) / cfg.trainer.batch_size)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    scheduler = build_scheduler(cfg.trainer, optimizer, cfg.optim.lr, steps_per_epoch * cfg.trainer.epochs)
    state = TrainState(model, optimizer, scheduler, shuffle_gen, device)
    metrics: list[dict] = []
    if start.kind == "resume":
        state.restore(cfg, start.state, start.plan, steps_per_epoch)  # in memory: the folder is untouched if it fails
        writer.begin_resume(start)
        metrics = writer.truncate_metrics(state.epoch)
        changes = describe_changes(start.plan.changes)
        log.info(f"resuming {output_dir} after epoch {state.epoch}" + (f" with {changes}" if changes else ""))
    else:
        writer.begin_fresh()
    if threads.recorded is not None:
        state.extra["threads"] = threads.recorded
    writer.write_config(cfg)

    train_x = splits.normalize(splits.train_x)  # (N, 1, 28, 28) float, normalized once
    title = describe(cfg)
    log.info(f"{title}: {count_parameters(model):,} parameters, {len(train_x):,} training images on {device}"
             + (f", {threads.describe()}" if device.type == "cpu" else ""))
    loggers = build_loggers(cfg, output_dir, model, splits, state.epoch + 1)
    try:
        while state.epoch < cfg.trainer.epochs:
            row = train_epoch(cfg, state, train_x, splits, on_step=loggers.log_step if loggers.wants_steps else None)
            epoch = row["epoch"]
            # With data.val_size=0 there is nothing to measure: None, never a made-up 0.
            row["val_loss"], row["val_acc"] = evaluate(model, splits.val_x, splits.val_y, splits,
                                                       cfg.trainer.eval_batch_size) if len(splits.val_y) else (None, None)
            reason = exploded(row, state.extra.get("initial_loss"), f"epoch {epoch}")
            if reason:
                raise Diverged(reason)  # before the checkpoint: the last good epoch stays saved
            state.epoch = epoch
            metrics.append(row)
            writer.append_metrics(row)
            save_checkpoint(state.checkpoint(cfg), output_dir / CHECKPOINT)
            loggers.log_epoch(metrics, model, splits)
            log.info(
                f"epoch {epoch}/{cfg.trainer.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}"
                f"  {_val_text(row)}  lr {row['lr']:.2e}"
                f"  {row['epoch_seconds']:.1f}s ({row['samples_per_s']:,.0f} samples/s)"
            )
            changed = threads.update()
            if changed:
                log.info(changed)
    except Diverged as exc:
        writer.write_curves(metrics, title)
        final = final_summary(cfg, model, metrics, wall_start, status="diverged", extra=state.extra)
        final["error"] = f"{exc}; {divergence_advice(cfg, output_dir, metrics)}"
        writer.write_final(final)
        loggers.close()
        raise ReplearnError(final["error"]) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (the command line turns it into a KeyboardInterrupt)
        loggers.close()
        saved = (f"the checkpoint of epoch {metrics[-1]['epoch']} is kept: continue with "
                 f"python scripts/train.py trainer.resume={output_dir}") if metrics else \
            "no epoch had finished, so nothing was saved"
        raise type(exc)(f"stopped during epoch {state.epoch + 1}; {saved}") from None
    writer.write_curves(metrics, title)
    model = model.to(memory_format=torch.contiguous_format)  # what loggers and callers expect to read
    test_loss, test_acc = evaluate(model, splits.test_x, splits.test_y, splits, cfg.trainer.eval_batch_size)
    reason = exploded({"test_loss": test_loss, "test_acc": test_acc}, state.extra.get("initial_loss"), "the end")
    final = final_summary(cfg, model, metrics, wall_start, status="diverged" if reason else "ok", extra=state.extra)
    final.update(test_loss=test_loss, test_acc=test_acc)
    if reason:
        final["error"] = f"{reason}; {divergence_advice(cfg, output_dir, metrics)}"
    writer.write_final(final)
    if reason:
        loggers.close()
        raise ReplearnError(final["error"])
    loggers.log_end(model, splits, final)
    loggers.close()
    log.info(f"test accuracy {100 * test_acc:.2f}%  (loss {test_loss:.4f})  wall time {final['wall_seconds']:.1f}s"
             f"  -> {output_dir}")
    _maybe_analyze(cfg, output_dir)
    return final


def train_epoch(cfg: DictConfig, state: TrainState, train_x: torch.Tensor, splits: Splits, on_step=None) -> dict:
    """Train epoch ``state.epoch + 1``: one pass over ``train_x`` (normalized ``splits.train_x``); its metrics row.

    ``on_step(global_step, scalars)`` is called after every step if given. The caller marks the epoch
    finished (``state.epoch``) once it has accepted the row.
    """
    model, optimizer, scheduler, device, extra = state.model, state.optimizer, state.scheduler, state.device, state.extra
    epoch = state.epoch + 1
    model.train()
    batch_size = cfg.trainer.batch_size
    order = torch.randperm(len(train_x), generator=state.shuffle_gen).to(device)
    memory_format = getattr(model, "training_memory_format", torch.contiguous_format)
    max_shift = cfg.trainer.get("augment_shift", 0)
    if max_shift:
        shifts = draw_shifts(len(order), max_shift, state.shuffle_gen).to(device)  # (N, 2), one per position in order
        background = float(splits.normalize(torch.zeros((), dtype=torch.uint8)))
    amp_dtype = autocast_dtype(device)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen, steps = 0, math.ceil(len(order) / batch_size)
    # Checking for NaN forces a host sync: every step on CPU (free), every 50 on GPU.
    check_every = 1 if device.type == "cpu" else 50
    bar = progress(range(steps), desc=f"epoch {epoch}", leave=False, enabled=cfg.trainer.progress,
               unit="batch", dynamic_ncols=True)
    start = time.perf_counter()
    for step in bar:
        idx = order[step * batch_size:(step + 1) * batch_size]
        if len(idx) < 2 and step > 0:
            continue  # a lone leftover sample breaks batch norm and adds nothing
        # index_select is ~2.5x faster than x[idx] for gathering whole rows on CPU.
        x, y = train_x.index_select(0, idx), splits.train_y.index_select(0, idx)
        if max_shift:
            x = shift_images(x, shifts[step * batch_size:(step + 1) * batch_size], background)
        x = x.contiguous(memory_format=memory_format)
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.trainer.label_smoothing)
        if step % check_every == 0 and not torch.isfinite(loss):
            raise Diverged(f"loss became {float(loss.detach())} at epoch {epoch}, step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if "initial_loss" not in extra:
            extra["initial_loss"] = float(loss.detach())  # the yardstick for an exploding loss
        if "grad_norms_init" not in extra:
            extra["grad_norms_init"] = block_grad_norms(model)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(idx)
        if on_step is not None:
            on_step((epoch - 1) * steps + step, {"train_loss": loss.detach(), "lr": optimizer.param_groups[0]["lr"]})
        if step % 50 == 49:
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{float(correct) / seen:.4f}", refresh=False)
    extra["grad_norms_final"] = block_grad_norms(model)
    if not torch.isfinite(loss_sum):
        raise Diverged(f"loss became non-finite during epoch {epoch}")
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "train_loss": float(loss_sum) / seen,
        "train_acc": float(correct) / seen,
        "lr": optimizer.param_groups[0]["lr"],
        "epoch_seconds": seconds,
        "samples_per_s": seen / seconds,
    }


def _val_text(row: dict) -> str:
    if row["val_loss"] is None:
        return "val n/a (data.val_size=0)"
    return f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"


def _maybe_analyze(cfg: DictConfig, output_dir: Path) -> None:
    if cfg.analysis.enabled:
        # lazy: the analysis stack costs 0.2 s at start-up and only analysis.enabled=true runs need it
        from replearn.analysis.run import analyze_run

        log.info("analysing the trained network (analysis.enabled=true) ...")
        analyze_run(output_dir, cfg.analysis)
        log.info(f"analysis -> {output_dir / ANALYSIS}")
