"""The one place that composes a project config with Hydra's compose API, and the check of each config.

The command line (before ``@hydra.main`` runs) and :func:`replearn.compose_config` both go through
here, so a typo, a wrong type or an out-of-range value reads the same everywhere: one line, raised as
:class:`~replearn.errors.ReplearnError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from replearn.conf import CONFIG_DIR
from replearn.conf.validate import validate_bench, validate_compare_depth, validate_trace, validate_train
from replearn.conf.visualize import validate_visualize
from replearn.errors import ReplearnError

#: Per top-level config (configs/<name>.yaml): the function that raises ReplearnError on a bad composed config.
VALIDATORS: dict[str, Callable[[DictConfig], None]] = {
    "train": validate_train,
    "bench": validate_bench,
    "visualize": validate_visualize,
    "compare_depth": validate_compare_depth,
    "trace": validate_trace,
}


def compose(config_name: str = "train", overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """configs/<config_name>.yaml with these overrides, not yet validated; a composition error raises one line.

    Hydra's global state is cleared before and after, so calls never see each other's (or a test's) Hydra.
    """
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
    except Exception as exc:  # Hydra's composition errors are long; say it in one line
        raise ReplearnError(describe_config_error(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def validate_config(config_name: str, cfg: DictConfig) -> None:
    """Check a composed config with its validator (configs without one pass); raise ReplearnError with one line."""
    check = VALIDATORS.get(config_name)
    if check is None:
        return
    try:
        check(cfg)
    except OmegaConfBaseException as exc:  # e.g. a bad interpolation, met while reading a value
        raise ReplearnError(describe_config_error(exc)) from None


def describe_config_error(exc: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error (the cause chain is searched for the useful part)."""
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
