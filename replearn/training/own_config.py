"""A run's own config: the one inside its checkpoint, plus what a later resume changed (``resumes.jsonl``).

``trainer.resume=<run> optim.lr=1e-4`` means "that run, with lr 1e-4". The command line's overrides
are composed on top of the run's own settings, which come from the run's checkpoint, never from
Hydra's ``.hydra/overrides.yaml`` (a refused command, a copy without ``.hydra/`` or a key removed
since would otherwise change what a resume continues). A resume that started from the checkpoint but
saved no epoch of its own (killed, or diverged at once) is part of the run too: its row in
``resumes.jsonl`` says what it changed, and those changes are kept (the divergence advice
``trainer.resume=<run> optim.lr=...`` keeps the diverged leg's ``trainer.epochs``).

:func:`own_overrides` turns the run's own config into overrides (the groups, then every value that
differs from what those groups give), so Hydra composes exactly that config with the typed overrides
after them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from replearn.conf.compose import compose
from replearn.errors import ReplearnError
from replearn.runs.layout import read_resumes
from replearn.training.resume import IGNORED, flatten, load_resume_state, matches

# Config groups whose option is the section's ``name`` (the trainer group follows the model's).
GROUPS = ("model", "data", "optim")


def own_config(run_dir: str | Path) -> tuple[dict[str, Any], int]:
    """(flat config, epoch) of the run in ``run_dir``: its checkpoint's config with the changes of a resume
    from that checkpoint that saved no epoch (the last such row of ``resumes.jsonl``); ReplearnError if unreadable."""
    run_dir = Path(run_dir)
    state = load_resume_state(run_dir)
    flat = flatten(state["config"])
    later = [row for row in read_resumes(run_dir)
             if row.get("after_epoch") == state["epoch"] and isinstance(row.get("changes"), dict)]
    if later:  # each row lists its changes against this same checkpoint: the last one holds them all
        for key, change in later[-1]["changes"].items():
            if isinstance(change, list) and len(change) == 2 and not (change[1] is None and key not in flat):
                flat[key] = change[1]
    return flat, state["epoch"]


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back (strings quoted, lists and dicts in brackets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = value.replace("${", "\\${")  # a literal, not an interpolation
        # Backslashes before a quote (or the closing one) are doubled, then the quote is escaped.
        text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text).replace("'", "\\'")
        return f"'{text}'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    raise ReplearnError(f"cannot express {value!r} as an override")


def _typed_keys(typed: Sequence[str]) -> set[str]:
    keys = set()
    for line in typed:
        key = line.split("=", 1)[0].lstrip("+~")
        keys.add(key)
    return keys


def _is_typed(key: str, typed: set[str]) -> bool:
    """A key the command line sets itself (or a section it replaces, e.g. ``model=cnn`` for ``model.*``)."""
    return any(key == t or key.startswith(t + ".") for t in typed)


def _diff(own: dict[str, Any], base: dict[str, Any], typed: set[str], top_level: bool) -> tuple[list[str], list[str]]:
    """(overrides for the values of ``own`` that ``base`` lacks, keys of ``own`` the config no longer has)."""
    overrides, removed = [], []
    for key, value in own.items():
        if ("." in key) == top_level or matches(key, IGNORED) or _is_typed(key, typed):
            continue
        if key not in base:
            removed.append(key)
        elif base[key] != value:
            overrides.append(f"{key}={format_value(value)}")
    return overrides, removed


def own_overrides(run_dir: str | Path, typed: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(overrides that compose the run's own config, keys of it this version no longer has).

    ``typed``: the command line's overrides, which come after these and win key by key; keys they set
    are left out here. Run-control keys (where data lives, threads, progress, ...) are not part of a
    run (:data:`replearn.training.resume.IGNORED`) and come from the command line or the defaults.
    """
    own, _ = own_config(run_dir)
    keys = _typed_keys(typed)
    groups = [f"{g}={own[f'{g}.name']}" for g in GROUPS if f"{g}.name" in own and g not in keys]
    # Two passes: top-level keys first (depth), then the sections, compared with what the first pass gives
    # (model.depth follows ${depth}, so it needs no override of its own).
    top, removed_top = _diff(own, _flat(groups), keys, top_level=True)
    nested, removed = _diff(own, _flat(groups + top), keys, top_level=False)
    return groups + top + nested, removed_top + removed


def _flat(overrides: list[str]) -> dict[str, Any]:
    return flatten(OmegaConf.to_container(compose("train", overrides), resolve=True))

