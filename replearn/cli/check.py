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
from replearn.cli.job import EXISTING
from replearn.conf.compose import compose, describe_config_error, validate_config
from replearn.errors import ReplearnError
from replearn.runs.layout import DEPTH_REPORT, HYDRA

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
        if config_name == "train" and user_overrides(sys.argv[1:]) is not None:
            sys.argv[1:] = keep_hydra_record(with_resumed_overrides(sys.argv[1:]))
        argv = sys.argv[1:]
    else:
        argv = quote_path_overrides(argv)
        if config_name == "train" and user_overrides(argv) is not None:
            argv = with_resumed_overrides(argv)
    overrides = user_overrides(argv)
    if overrides is None:
        return
    try:
        check_single_values(argv, overrides)
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


def check_single_values(argv: list[str], overrides: list[str]) -> None:
    """Without ``-m``, ``key=a,b`` is several values for one job: one line here instead of Hydra's six-line error."""
    if any(a in ("-m", "--multirun") or a.replace(" ", "") == "hydra.mode=MULTIRUN" for a in argv):
        return
    for override in overrides:
        parsed = _parse(override)
        if parsed is None or not parsed.is_sweep_override():
            continue
        key, value = parsed.key_or_group, override.partition("=")[2]
        if key.lstrip("+~") in PATH_KEYS:
            raise ReplearnError(f"{key}={value} names several paths; pass one (a path with a comma in its name "
                                f"goes in quotes: {key}='{value}'), or add -m to run once per path")
        raise ReplearnError(f"{key}={value} gives several values to one run; add -m to run once per value "
                            f"(a list value is written {key}=[{value}])")


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
    """With ``trainer.resume=<run>``: the run's own settings first, and the run's folder as Hydra's job folder.

    ``trainer.resume=<run> trainer.epochs=5`` then means "that run, with 5 epochs", not "the defaults
    with 5 epochs": the run's own config (its checkpoint's, plus what a later resume changed:
    :mod:`replearn.training.own_config`) becomes overrides, and the ones typed now replace them key by
    key. Hydra logs into the run's own ``train.log`` and writes no ``.hydra/`` (the run keeps the one
    from its first start), so a resume leaves no stray ``outputs/<date>/<time>_...`` folder and a
    refused one changes nothing. A resume that cannot start (a file, a folder without a checkpoint,
    a damaged checkpoint, ``trainer.force=true``) exits with one line before Hydra starts.
    """
    typed = {arg: _parse(arg) for arg in argv if "=" in arg and not arg.startswith("-")}
    resume = next((o for o in typed.values() if o is not None and o.key_or_group == "trainer.resume"), None)
    if resume is None or not isinstance(resume.value(), str) or any(a in ("-m", "--multirun") for a in argv):
        return argv
    # lazy: reading a checkpoint needs torch; only a resume reads one (--help and the checks stay torch-free)
    from replearn.training.own_config import own_overrides
    from replearn.training.resume import force_and_resume, resume_target  # lazy: as above

    try:
        run = resume_target(resume.value())
        if any(o is not None and o.key_or_group == "trainer.force" and o.value() is True for o in typed.values()):
            raise ReplearnError(force_and_resume(run))
        kept, removed = own_overrides(run, [o.input_line for o in typed.values() if o is not None])
    except ReplearnError as exc:
        fail(str(exc))
    print(f"resuming {run} with its own settings: {' '.join(kept) or 'the defaults'}")
    if removed:
        print(f"note: {run} has settings this version no longer has, left out: {', '.join(removed)}")
    keys = {o.key_or_group for o in typed.values() if o is not None}
    job = [] if "hydra.run.dir" in keys else quote_path_overrides([f"hydra.run.dir={run}"])
    if "hydra.output_subdir" not in keys:
        job.append("hydra.output_subdir=null")
    return kept + argv + job


def keep_hydra_record(argv: list[str]) -> list[str]:
    """A single run into a folder that already holds a run: ``hydra.output_subdir=null`` added.

    Hydra writes ``.hydra/`` before the run can refuse (other settings, a folder in use): the folder's
    record of its first start must not be replaced by a command that is then refused.
    """
    if any(a in ("-m", "--multirun") for a in argv) or any(a.startswith("hydra.output_subdir=") for a in argv):
        return argv
    folder = _job_folder("train", argv, multirun=False)
    if folder is not None and folder.is_dir() and any(folder.iterdir()):
        return [*argv, "hydra.output_subdir=null"]
    return argv


def _job_folder(config_name: str, argv: list[str], multirun: bool) -> Path | None:
    """The run (or sweep) folder Hydra will create for ``argv``; None where Hydra writes no folder of its own."""
    overrides = user_overrides(argv) or []
    overrides = next(iter(_combinations(overrides))) if overrides else []
    overrides += [a for a in argv if a.lstrip("+~").startswith("hydra.") and "=" in a]
    try:
        hydra_cfg = compose(config_name, overrides, return_hydra_config=True).hydra
        folder = Path(str(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir))  # resolves ${now:...}
        writes_nothing = hydra_cfg.output_subdir is None and str(folder) == "."
    except Exception:
        return None  # Hydra reports its own problems; this is only about folders
    return None if writes_nothing else folder  # scripts/visualize.py, scripts/compare_depth.py write none


def check_output_dirs(config_name: str, argv: list[str]) -> None:
    """ReplearnError if the run (or sweep) folder Hydra creates before our code runs cannot be written.

    Also notes the folders that exist already (:data:`replearn.cli.job.EXISTING`): a command that fails
    never removes a folder it did not create.
    """
    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = _job_folder(config_name, argv, multirun)
    if folder is None:
        return
    folders = [folder]
    if multirun and folder.is_dir():  # a re-run writes into the job folders that exist
        folders += [job for job in sorted(folder.iterdir()) if job.is_dir() and job.name != DEPTH_REPORT]
    EXISTING.update(str(path.resolve()) for path in folders if path.is_dir())
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
