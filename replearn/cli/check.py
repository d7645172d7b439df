"""The checks a script runs before ``@hydra.main``: a bad command line stops with one line, before Hydra starts.

:func:`check_cli` quotes path values (sweep job folders have ``=`` and ``,`` in their names), puts a
resumed run's own overrides first, composes and validates the config of every swept value, and checks
that the folders Hydra will create can be written. It must stay cheap: the console commands run it for
``--help`` too, so nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

from replearn.cli.errors import fail
from replearn.conf.compose import compose, describe_config_error, validate_config
from replearn.errors import ReplearnError
from replearn.runs.layout import DEPTH_REPORT, HYDRA, read_overrides

# Hydra flags that take a value; their value is not an override.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}
# Flags that make Hydra print something instead of running the job: nothing to check.
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
               "--shell-completion", "-sc", "--resolve"}

# Options whose value is a path. Sweep run folders are named like ``depth=8,seed=1,variant=plain``:
# Hydra's override grammar reads such a value as a sweep with a nested ``=`` and fails, so these
# values are quoted before Hydra parses argv (the value the config receives is the path as typed).
PATH_KEYS = {"run", "sweep", "network", "root", "trainer.resume", "data.root", "hydra.run.dir", "hydra.sweep.dir"}
_GRAMMAR_CHARS = set("=,[]{}()'\"\\ :$*?<>|&;#!~")


def check_cli(config_name: str, argv: list[str] | None = None) -> None:
    """Exit with one line (status 2) if the command-line overrides do not make a valid config.

    Called before ``@hydra.main``. Without ``argv`` it reads ``sys.argv`` and rewrites it as Hydra
    must see it: path values quoted (:func:`quote_path_overrides`), a resumed run's overrides first
    (:func:`with_resumed_overrides`).
    """
    if argv is None:
        sys.argv[1:] = quote_path_overrides(sys.argv[1:])
        if config_name == "train":
            sys.argv[1:] = with_resumed_overrides(sys.argv[1:])
        argv = sys.argv[1:]
    else:
        argv = quote_path_overrides(argv)
    overrides = user_overrides(argv)
    if overrides is None:
        return
    try:
        check_config(config_name, overrides)
        check_output_dirs(config_name, argv)
    except ReplearnError as exc:
        fail(str(exc))


def check_config(config_name: str, overrides: list[str]) -> None:
    """Compose ``config_name`` with ``overrides`` and validate it; raise ReplearnError with one line.

    In a sweep (``depth=1,2,3``) every swept value is composed and checked once.
    """
    try:
        combos = list(_combinations(overrides))
    except Exception as exc:  # the override grammar's own errors are long
        raise ReplearnError(f"cannot parse overrides {' '.join(overrides)}: {describe_config_error(exc)}") from None
    for combo in combos:
        validate_config(config_name, compose(config_name, combo))


def user_overrides(argv: list[str]) -> list[str] | None:
    """The key=value overrides in argv (Hydra's own ``hydra.*`` ones left out), or None when Hydra only prints."""
    if any(arg.split("=")[0] in _INFO_FLAGS for arg in argv):
        return None
    overrides, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg.startswith("-"):
            skip_next = arg in _FLAGS_WITH_VALUE
            continue
        key = arg.lstrip("+~").split("=")[0]
        if key.startswith("hydra"):
            continue  # launcher/sweeper settings are Hydra's to check
        overrides.append(arg)
    return overrides


def _combinations(overrides: list[str]) -> Iterable[list[str]]:
    """For sweeps, every value of each swept key (the others at their first value)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override in parsed:
        if override.is_sweep_override():
            values = [f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()]
        else:
            values = [override.input_line]
        choices.append(values or [override.input_line])
    yield [values[0] for values in choices]
    for i, values in enumerate(choices):
        for value in values[1:]:
            yield [value if j == i else other[0] for j, other in enumerate(choices)]


def quote_path_overrides(argv: list[str]) -> list[str]:
    """``run=multirun/x/depth=1,variant=plain`` -> ``run='multirun/x/depth=1,variant=plain'`` for the PATH_KEYS.

    A value is left alone if it is already quoted, is an interpolation, or (with a comma but no
    ``=``) names no existing path - then it may be a deliberate sweep over several paths.
    """
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        bare = key.lstrip("+~")
        if (not sep or bare not in PATH_KEYS or not value or value[0] in "'\"" or "${" in value
                or not (_GRAMMAR_CHARS & set(value))):
            out.append(arg)
            continue
        if "=" not in value and "," in value and not os.path.exists(os.path.expanduser(value)):
            out.append(arg)  # e.g. run=a,b in a multirun: Hydra's sweep syntax
            continue
        quote = "'" if "'" not in value else '"'
        if quote in value:
            value = value.replace("'", "\\'")
            quote = "'"
        out.append(f"{key}={quote}{value}{quote}")
    return out


def _parse(override: str) -> Override | None:
    try:
        return OverridesParser.create().parse_override(override)
    except Exception:
        return None


def with_resumed_overrides(argv: list[str]) -> list[str]:
    """With ``trainer.resume=<run>``, put the run's own overrides (its ``.hydra/overrides.yaml``) first.

    ``trainer.resume=<run> trainer.epochs=5`` then means "that run, with 5 epochs", not "the
    defaults with 5 epochs": the overrides typed now replace the run's ones key by key.
    """
    typed = {arg: _parse(arg) for arg in argv if "=" in arg and not arg.startswith("-")}
    resume = next((o for o in typed.values() if o is not None and o.key_or_group == "trainer.resume"), None)
    if resume is None or not isinstance(resume.value(), str):
        return argv
    run = Path(resume.value()).expanduser()
    run = run.parent if run.is_file() else run
    saved = read_overrides(run)
    if saved is None:
        return argv
    keys = {o.key_or_group.lstrip("+~") for o in typed.values() if o is not None}
    kept = []
    for line in map(str, saved):
        parsed = _parse(line)
        if parsed is None or parsed.is_sweep_override():
            continue
        key = parsed.key_or_group.lstrip("+~")
        if key not in keys and not key.startswith("hydra") and key != "trainer.resume":
            kept.append(line)
    if kept:
        print(f"resuming {run} with its own settings: {' '.join(kept)}")
    return kept + argv


def check_output_dirs(config_name: str, argv: list[str]) -> None:
    """ReplearnError if the run (or sweep) folder Hydra creates before our code runs cannot be written."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = user_overrides(argv) or []
    overrides = next(iter(_combinations(overrides))) if overrides else []
    overrides += [a for a in argv if a.lstrip("+~").startswith("hydra.") and "=" in a]
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        hydra_cfg = compose(config_name, overrides, return_hydra_config=True).hydra
        folder = Path(str(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir))  # resolves ${now:...}
        writes_nothing = hydra_cfg.output_subdir is None and str(folder) == "."
    except Exception:
        return  # Hydra reports its own problems; this check is only about folders
    if writes_nothing:
        return  # the job writes no folder of Hydra's (scripts/visualize.py, scripts/compare_depth.py)
    folders = [folder]
    if multirun and folder.is_dir():  # a re-run writes into the job folders that exist
        folders += [job for job in sorted(folder.iterdir()) if job.is_dir() and job.name != DEPTH_REPORT]
    targets = [target for path in folders for target in (path, path / HYDRA) if target == path or target.is_dir()]
    blocked = next((b for b in map(_blocking_folder, targets) if b is not None), None)
    if blocked is not None:
        raise ReplearnError(f"cannot write to {blocked} (read-only or no permission); make it writable, "
                            f"or choose another folder with {key}=<dir>")


def _blocking_folder(path: Path) -> Path | None:
    """The folder that blocks writing ``path`` (itself or its nearest existing parent), or None."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return None if os.access(probe, os.W_OK | os.X_OK) else probe
