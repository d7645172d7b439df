"""Helpers for the thin Hydra scripts: one-line errors instead of tracebacks.

``check_cli`` composes the command-line overrides with Hydra's compose API
before ``@hydra.main`` runs, so a typo, a wrong type or an out-of-range value
stops at once with one line. ``report_errors`` turns a ReplearnError raised by
the library into the same kind of line.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Iterable

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
        from replearn.conf.validate import validate_bench, validate_train
        from replearn.conf.visualize import validate_visualize

        VALIDATORS["train"] = validate_train
        VALIDATORS.setdefault("bench", validate_bench)
        VALIDATORS.setdefault("visualize", validate_visualize)
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


def check_cli(config_name: str, argv: list[str] | None = None) -> None:
    """Exit with one line (status 2) if the command-line overrides do not make a valid config."""
    overrides = _user_overrides(sys.argv[1:] if argv is None else argv)
    if overrides is None:
        return
    try:
        check_config(config_name, overrides)
    except ReplearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
        except ReplearnError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if not _in_multirun():
                raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


def _config_name() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().job.config_name


