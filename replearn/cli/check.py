"""Helpers for the thin Hydra scripts: one-line errors instead of tracebacks.

``check_cli`` composes the command-line overrides with Hydra's compose API
before ``@hydra.main`` runs, so a typo, a wrong type or an out-of-range value
stops at once with one line. ``report_errors`` turns a ReplearnError raised by
the library into the same kind of line.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import replearn.conf  # noqa: F401  (registers the schemas)
from replearn.conf import CONFIG_DIR
from replearn.errors import ReplearnError

# Per top-level config: a function that raises ReplearnError on a bad composed config.
VALIDATORS: dict[str, Callable[[DictConfig], None]] = {}

# Hydra flags that take a value; their value is not an override.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
               "--shell-completion", "-sc", "--resolve"}


def _validators() -> dict[str, Callable[[DictConfig], None]]:
    if "train" not in VALIDATORS:
        from replearn.conf.validate import validate_bench, validate_compare_depth, validate_trace, validate_train
        from replearn.conf.visualize import validate_visualize

        VALIDATORS["train"] = validate_train
        VALIDATORS.setdefault("bench", validate_bench)
        VALIDATORS.setdefault("visualize", validate_visualize)
        VALIDATORS.setdefault("compare_depth", validate_compare_depth)
        VALIDATORS.setdefault("trace", validate_trace)
    return VALIDATORS


def _user_overrides(argv: list[str]) -> list[str] | None:
    """The key=value overrides in argv, or None when Hydra should handle argv itself."""
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
    from hydra.core.override_parser.overrides_parser import OverridesParser

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


def describe_config_error(exc: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error."""
    from hydra.errors import MissingConfigException

    chain, seen = [], exc
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for err in chain:
        if isinstance(err, MissingConfigException):
            missing = str(err.missing_cfg_file or "")
            options = [o for o in (err.options or []) if not o.endswith("_schema")]
            group, _, name = missing.rpartition("/")
            if group and options:
                return f"{group}={name} is invalid: choose one of {', '.join(sorted(options))}"
            return str(err).splitlines()[0]
    for err in chain:
        if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
            msg = str(getattr(err, "msg", err)).splitlines()[0]
            value = getattr(err, "value", None)
            if "not in struct" in msg or "Key '" in msg:
                return f"{err.full_key} is not a config key: check the spelling ({msg})"
            return f"{err.full_key}={value!r} is invalid: {msg}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_config(config_name: str, overrides: list[str]) -> None:
    """Compose ``config_name`` with ``overrides`` and validate it; raise ReplearnError with one line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        combos = list(_combinations(overrides))
    except Exception as exc:  # the override grammar's own errors are long
        raise ReplearnError(f"cannot parse overrides {' '.join(overrides)}: {describe_config_error(exc)}") from None
    validate = _validators().get(config_name)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for combo in combos:
            try:
                cfg = compose(config_name, overrides=combo)
            except Exception as exc:
                raise ReplearnError(describe_config_error(exc)) from None
            if validate is not None:
                try:
                    validate(cfg)
                except OmegaConfBaseException as exc:  # e.g. a bad interpolation
                    raise ReplearnError(describe_config_error(exc)) from None
    GlobalHydra.instance().clear()


# Options whose value is a path. Sweep run folders are named like ``depth=8,seed=1,variant=plain``:
# Hydra's override grammar reads such a value as a sweep with a nested ``=`` and fails, so these
# values are quoted before Hydra parses argv (the value the config receives is the path as typed).
PATH_KEYS = {"run", "sweep", "network", "root", "trainer.resume", "data.root", "hydra.run.dir", "hydra.sweep.dir"}
_GRAMMAR_CHARS = set("=,[]{}()'\"\\ :$*?<>|&;#!~")


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


def check_cli(config_name: str, argv: list[str] | None = None) -> None:
    """Exit with one line (status 2) if the command-line overrides do not make a valid config.

    Called before ``@hydra.main``; it also quotes path values in ``sys.argv`` (see
    :func:`quote_path_overrides`) and checks that the folders Hydra will write to are writable.
    """
    if argv is None:
        sys.argv[1:] = quote_path_overrides(sys.argv[1:])
        if config_name == "train":
            sys.argv[1:] = with_resumed_overrides(sys.argv[1:])
        argv = sys.argv[1:]
    else:
        argv = quote_path_overrides(argv)
    overrides = _user_overrides(argv)
    if overrides is None:
        return
    try:
        check_config(config_name, overrides)
        check_output_dirs(config_name, argv)
    except ReplearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _parse(override: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override)
    except Exception:
        return None


def with_resumed_overrides(argv: list[str]) -> list[str]:
    """With ``trainer.resume=<run>``, put the run's own overrides (its ``.hydra/overrides.yaml``) first.

    ``trainer.resume=<run> trainer.epochs=5`` then means "that run, with 5 epochs", not "the
    defaults with 5 epochs": the overrides typed now replace the run's ones key by key.
    """
    import yaml

    typed = {arg: _parse(arg) for arg in argv if "=" in arg and not arg.startswith("-")}
    resume = next((o for o in typed.values() if o is not None and o.key_or_group == "trainer.resume"), None)
    if resume is None or not isinstance(resume.value(), str):
        return argv
    run = Path(resume.value()).expanduser()
    run = run.parent if run.is_file() else run
    try:
        saved = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return argv
    if not isinstance(saved, list):
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


def _writable(path: Path) -> Path | None:
    """The folder that blocks writing ``path`` (itself or its nearest existing parent), or None."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        return probe
    hydra_dir = path / ".hydra"
    if hydra_dir.is_dir() and not os.access(hydra_dir, os.W_OK | os.X_OK):
        return hydra_dir
    return None


def check_output_dirs(config_name: str, argv: list[str]) -> None:
    """ReplearnError if the run (or sweep) folder Hydra creates before our code runs cannot be written."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [o for o in (_user_overrides(argv) or [])]
    overrides = [next(iter(_combinations(overrides)), [])][0] if overrides else []
    overrides += [a for a in argv if a.lstrip("+~").startswith("hydra.") and "=" in a]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            hydra_cfg = compose(config_name, overrides=overrides, return_hydra_config=True).hydra
            key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            folder = Path(str(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir))
            silent = hydra_cfg.output_subdir is None and str(folder) == "."
    except Exception:
        return  # Hydra reports its own problems; this check is only about folders
    finally:
        GlobalHydra.instance().clear()
    if silent:
        return
    blocked = [_writable(folder)]
    if multirun and folder.is_dir():  # a re-run writes into the job folders that exist
        blocked += [_writable(job) for job in sorted(folder.iterdir()) if job.is_dir() and job.name != "depth_report"]
    for path in blocked:
        if path is not None:
            raise ReplearnError(f"cannot write to {path} (read-only or no permission); make it writable, "
                                f"or choose another folder with {key}=<dir>")


def hydra_output_dir() -> Path:
    """The current Hydra job's output directory."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def report_errors(task: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """Print a ReplearnError as one line; exit 2 in a single run, keep a sweep going in multirun."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> None:
        try:
            validate = _validators().get(_config_name())
            if validate is not None:
                validate(cfg)
            task(cfg)
        except (ReplearnError, OSError) as exc:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            _discard_unstarted_run_dir()
            if not _in_multirun():
                raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


def _one_line(exc: BaseException) -> str:
    """A ReplearnError's message, or an OS error (full disk, read-only folder) with its fix."""
    if isinstance(exc, ReplearnError):
        return str(exc)
    where = exc.filename or "a file"
    fix = ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
           else "make it writable or choose another folder" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
           else "check the path")
    return f"cannot use {where}: {exc.strerror or exc}; {fix}, then run the command again"


def _discard_unstarted_run_dir() -> None:
    """Remove the run folder of a run that failed before writing anything (only Hydra's files in it).

    Such folders would otherwise pile up and read as failed runs in a sweep report.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or _config_name() != "train":
        return
    try:
        folder = Path(HydraConfig.get().runtime.output_dir)
        entries = {p.name: p for p in folder.iterdir()}
        logs = [p for name, p in entries.items() if name.endswith(".log")]
        if set(entries) - {".hydra", ".lock", *(p.name for p in logs)}:
            return  # the run wrote something of its own: keep everything
        import logging
        import shutil

        from replearn.runs.lock import RunLock

        with RunLock(folder):  # not while another process owns it (it may have just started)
            logging.shutdown()  # close the job's log file before removing it
            shutil.rmtree(folder)
    except ReplearnError:
        pass  # in use by another process: leave it to that process
    except OSError:
        pass  # best effort: a folder we cannot remove is left as it is


def _config_name() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().job.config_name


