"""Shared fixtures: headless matplotlib, the real configs through Hydra's compose API, tiny data."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import DATA_DIR  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory):
    """Concept masks, priors and reference classifiers built by tests go to a temporary cache, not ~/.cache."""
    previous = os.environ.get("REPLEARN_CACHE_DIR")
    os.environ["REPLEARN_CACHE_DIR"] = str(tmp_path_factory.mktemp("replearn-cache"))
    yield
    if previous is None:
        os.environ.pop("REPLEARN_CACHE_DIR", None)
    else:
        os.environ["REPLEARN_CACHE_DIR"] = previous


@pytest.fixture
def compose_cfg():
    """compose_cfg(config_name, overrides) -> DictConfig, using the project's real configs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import replearn.conf  # noqa: F401  (registers schemas)
    from replearn.conf import CONFIG_DIR

    def _compose(config_name: str = "train", overrides: list[str] | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name, overrides=list(overrides or []))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST copy; tests needing it skip when it is absent (outside CI)."""
    if not (DATA_DIR / "MNIST" / "raw").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"MNIST copy missing at {DATA_DIR}; set REPLEARN_DATA_DIR")
        pytest.skip(f"no MNIST copy at {DATA_DIR} (set REPLEARN_DATA_DIR)")
    return DATA_DIR
