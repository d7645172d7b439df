"""The shuffled-label control of a run: the same network, optimiser and budget trained on permuted labels.

The random-init network is the only other control of a per-layer measure, and any trained classifier
beats it. The shuffled-label twin sees the same images in the same order with the same optimiser, so
what it shows comes from the image statistics and the training dynamics, not from the labels.

The twin is a complete run folder of its own inside the run's, ``<run>/controls/shuffled_labels/``
(config, ``.hydra/``, ``train.log``, checkpoint, ``final.json``), trained by the training command
(``replearn-train``) with the run's own config plus ``data.shuffle_labels=true`` and
``analysis.enabled=false``. It trains in a process of its own: the analysis that asks for it runs
inside a training run (``analysis.enabled=true``), and a nested run in the same process would reset
that process's seed and thread count and write its lines into the outer run's ``train.log``.
"""

from __future__ import annotations

import codecs
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from replearn.conf.compose import compose, validate_config
from replearn.errors import ReplearnError
from replearn.runs.layout import CHECKPOINT, CONTROLS, SHUFFLED_LABELS, read_config, read_final
from replearn.runs.load import load_run
from replearn.training.own_config import format_value, own_overrides
from replearn.training.resume import IGNORED, flatten, load_resume_state, matches

log = logging.getLogger(__name__)

# The keys in which the twin's config differs from its run's (besides where and how it runs: resume.IGNORED).
TWIN_KEYS = ("data.shuffle_labels", "analysis.enabled")
# The training command, run by this interpreter (any install has it: the console command replearn-train).
TRAIN_COMMAND = ("-c", "from replearn.cli.commands import train_command; train_command()")


def shuffled_control_dir(run_dir: str | os.PathLike) -> Path:
    """Where the shuffled-label twin of ``run_dir`` lives: ``<run>/controls/shuffled_labels/``."""
    return Path(run_dir) / CONTROLS / SHUFFLED_LABELS


def _flat_cfg(cfg: DictConfig) -> dict[str, Any]:
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def _differences(run: Mapping[str, Any], twin: Mapping[str, Any], allowed: tuple[str, ...]) -> list[str]:
    """Keys both configs have whose values differ, other than ``allowed`` and the run-control keys.

    A key only one side has was added to (or removed from) the schema between the two; its default
    keeps the old behaviour, as on resume (replearn.training.resume.config_changes).
    """
    return sorted(k for k in set(run) & set(twin)
                  if run[k] != twin[k] and not matches(k, IGNORED) and k not in allowed)


def _is_twin_of(run: Mapping[str, Any], twin: Mapping[str, Any] | None) -> bool:
    """Whether ``twin`` (a folder's recorded flat config) is the shuffled-label twin of ``run``'s."""
    return (twin is not None and twin.get("data.shuffle_labels") is True
            and not _differences(run, twin, TWIN_KEYS))


def _finished_run(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any], dict]:
    """(folder, flat config, checkpoint extras) of a finished run; ReplearnError (one line) for anything else."""
    path = Path(run_dir).expanduser()
    fix = "pass a run folder written by scripts/train.py that finished"
    if not (path / CHECKPOINT).is_file():
        raise ReplearnError(f"{path} is not a run folder (no {CHECKPOINT}); {fix}")
    final = read_final(path)
    if not final or final.get("status") != "ok":
        status = final.get("status") if final else "unfinished (no final.json)"
        raise ReplearnError(f"{path} is {status}, not a finished run, so it has no shuffled-label control; {fix}")
    state = load_resume_state(path)  # the checkpoint's config is the run's record (config.yaml may be damaged)
    flat = flatten(state["config"])
    if flat.get("data.shuffle_labels") is True:
        raise ReplearnError(f"{path} was itself trained on shuffled labels; pass the run it is the control of")
    extra = state.get("extra")
    return path, flat, extra if isinstance(extra, dict) else {}


def _threads(run: Mapping[str, Any], extra: dict) -> int:
    """The run's thread count: its own setting, else the count its checkpoint recorded (runs whose numbers depend on it)."""
    threads = run.get("trainer.threads")
    if isinstance(threads, int) and threads > 0:
        return threads
    pinned = extra.get("threads")
    return pinned if isinstance(pinned, int) and not isinstance(pinned, bool) and pinned > 0 else 0


def twin_settings(run_dir: str | os.PathLike, progress: bool = False) -> tuple[list[str], DictConfig]:
    """(command-line overrides, validated config) of the shuffled-label twin of ``run_dir`` (a finished run)."""
    run_dir, run, extra = _finished_run(run_dir)
    # Where and how the twin runs is the run's too (resume.IGNORED leaves these keys out of own_overrides).
    typed = ["data.shuffle_labels=true", "analysis.enabled=false", f"trainer.progress={format_value(bool(progress))}",
             f"trainer.threads={_threads(run, extra)}", f"device={format_value(str(run.get('device', 'auto')))}"]
    root = run.get("data.root")
    if isinstance(root, str) and Path(root).expanduser().is_dir():  # where the run found its data; else the default
        typed.append(f"data.root={format_value(root)}")
    own, removed = own_overrides(run_dir, typed)
    if removed:
        log.warning(f"{run_dir} has settings this version no longer has, left out of its control: {', '.join(removed)}")
    overrides = own + typed
    cfg = compose("train", overrides)
    validate_config("train", cfg)
    differ = _differences(run, _flat_cfg(cfg), TWIN_KEYS)
    if differ:
        raise ReplearnError(f"the shuffled-label control of {run_dir} would differ from it in {', '.join(differ)}; "
                            "this version cannot rebuild the run's config: retrain the run with it first")
    return overrides, cfg


def _stale(twin_dir: Path, cfg: DictConfig) -> bool:
    """Whether ``twin_dir`` holds anything the training loop must not skip or continue: a run from another
    config, or one whose checkpoint cannot be continued."""
    if (twin_dir / CHECKPOINT).is_file():
        try:
            recorded = flatten(load_resume_state(twin_dir)["config"])
        except ReplearnError:
            return True
        return not _is_twin_of(_flat_cfg(cfg), recorded)
    if read_final(twin_dir) is not None:  # it stopped before its first checkpoint
        stored = read_config(twin_dir)
        return stored is None or not _is_twin_of(_flat_cfg(cfg), flatten(stored))
    return False  # empty, or killed before its first epoch: the loop starts it fresh


def _run_training(overrides: list[str]) -> None:
    """Run the training command with ``overrides`` in a process of its own; ReplearnError (its one line) if it fails.

    Its console lines and progress bars pass through as they come; its stderr is also kept for the error line.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, *TRAIN_COMMAND, *overrides], stderr=subprocess.PIPE, env=env)
    decoder, kept = codecs.getincrementaldecoder("utf-8")(errors="replace"), []
    try:
        while chunk := proc.stderr.read1(1 << 16):
            text = decoder.decode(chunk)
            sys.stderr.write(text)
            sys.stderr.flush()
            kept.append(text)
        code = proc.wait()
    except BaseException:  # Ctrl-C, SIGTERM: the training process stops too (it keeps its last checkpoint)
        proc.terminate()
        proc.wait()
        raise
    finally:
        proc.stderr.close()
    if code == 0:
        return
    errors = [line for line in "".join(kept).splitlines() if line.startswith("error: ")]
    if code in (130, 143) and not errors:  # interrupted: it said what it kept
        raise KeyboardInterrupt(f"the shuffled-label control's training stopped (status {code})")
    reason = errors[-1][len("error: "):] if errors else f"the training process exited with status {code}"
    raise ReplearnError(f"training the shuffled-label control failed: {' '.join(reason.split())}")


def train_shuffled_control(run_dir: str | os.PathLike, progress: bool = False) -> Path:
    """Train the shuffled-label twin of the finished run ``run_dir`` (same config and budget); its folder.

    A finished twin trained from the same config is reused as it is; an unfinished one continues from
    its checkpoint (training's own resume, bit-identical to an uninterrupted run); one trained from
    another config, or whose checkpoint cannot be read, is trained again from scratch.
    """
    overrides, cfg = twin_settings(run_dir, progress)
    twin_dir = shuffled_control_dir(Path(run_dir).expanduser()).resolve()
    stale, final = _stale(twin_dir, cfg), read_final(twin_dir)
    if not stale and final and final.get("status") == "ok" and (twin_dir / CHECKPOINT).is_file():
        return twin_dir  # decided here: starting a process only to learn that the twin is done costs seconds
    if stale:
        log.info(f"{twin_dir} was trained from another config or cannot be continued: training it again")
        overrides.append("trainer.force=true")
    _run_training([*overrides, f"hydra.run.dir={twin_dir}"])
    final = read_final(twin_dir)
    if not final or final.get("status") != "ok":  # a diverged twin found as it was (a new divergence failed above)
        status = final.get("status") if final else "no final.json"
        raise ReplearnError(f"the shuffled-label control in {twin_dir} {status}: {(final or {}).get('error', '')}; "
                            "delete that folder to train it again")
    return twin_dir


def load_shuffled_control(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module | None:
    """The trained shuffled-label twin of ``run_dir`` (eval mode, on ``device``), or None when it has none.

    None also when the twin never finished. ReplearnError (one line) for a folder that is not a run, and
    for a finished twin trained from another config than the run's: it is not this run's control.
    """
    path = Path(run_dir).expanduser()
    if not (path / CHECKPOINT).is_file():
        raise ReplearnError(f"{path} is not a run folder (no {CHECKPOINT}); pass a run folder written by scripts/train.py")
    twin_dir = shuffled_control_dir(path)
    final = read_final(twin_dir)
    if not final or final.get("status") != "ok" or not (twin_dir / CHECKPOINT).is_file():
        return None
    twin = load_run(twin_dir, device=device)
    if not _is_twin_of(flatten(load_resume_state(path)["config"]), _flat_cfg(twin.cfg)):
        raise ReplearnError(f"{twin_dir} was trained from another config than {path}; retrain it with "
                            f"replearn.analysis.controls.train_shuffled_control('{path}')")
    return twin.model
