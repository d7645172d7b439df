"""Shared fixtures: headless matplotlib, one seed and thread count per test, the real configs through Hydra's
compose API, a private cache, tiny data and tiny trained runs."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import DATA_DIR, FAST_ANY_MODEL, run_script  # noqa: E402

from replearn.conf.compose import compose  # noqa: E402
from replearn.data import make_synthetic  # noqa: E402
from replearn.device import single_thread  # noqa: E402


@pytest.fixture(autouse=True)
def _isolate():
    """Each test starts from seed 0, and a test that changes torch's thread count does not pass it on."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Torch on one CPU thread for the test (the count before is restored after).

    For tests of many tiny ops: on a shared machine a second thread only adds waiting. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")`` for a whole module.
    """
    with single_thread():
        yield


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
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A cache of this test's own (REPLEARN_CACHE_DIR), empty at the start; the path (not yet created)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("REPLEARN_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def compose_cfg():
    """compose_cfg(config_name, overrides, return_hydra_config=False) -> DictConfig from the project's real configs.

    Not validated (tests hand bad values to the library on purpose); a composition error is a one-line ReplearnError.
    """

    def _compose(config_name: str = "train", overrides: Sequence[str] | None = None, return_hydra_config: bool = False):
        return compose(config_name, overrides or (), return_hydra_config=return_hydra_config)

    return _compose


@pytest.fixture(scope="session")
def synthetic() -> Callable:
    """make_synthetic at the tests' small sizes (400 train, 200 test, 50 val); keywords change them."""
    return functools.partial(make_synthetic, num_train=400, num_test=200, val_size=50)


@pytest.fixture(scope="module")
def splits(synthetic):
    """Small synthetic splits, made once per module (a module may override this fixture for other sizes)."""
    return synthetic()


class TrainedRuns:
    """Runs trained once per session, one per list of overrides; tests work on copies, so they stay independent."""

    def __init__(self, compose_cfg: Callable, root: Path):
        self._compose, self._root, self._runs = compose_cfg, root, {}

    def copy(self, overrides: Sequence[str], dest: Path) -> Path:
        """A copy at ``dest`` of the finished run that ``train`` makes with ``overrides``."""
        key = tuple(overrides)
        if key not in self._runs:
            # lazy: the training stack costs every pytest start-up a second; only tests of finished runs need it
            from replearn.training.loop import train

            self._runs[key] = self._root / f"run{len(self._runs)}"
            train(self._compose("train", list(overrides)), self._runs[key])
        shutil.copytree(self._runs[key], dest)
        return dest


@pytest.fixture(scope="session")
def trained_runs(compose_cfg, tmp_path_factory) -> TrainedRuns:
    """For module-scoped fixtures: ``trained_runs.copy(overrides, dest)``."""
    return TrainedRuns(compose_cfg, tmp_path_factory.mktemp("trained"))


@pytest.fixture
def trained_run(trained_runs, tmp_path) -> Callable[..., Path]:
    """trained_run(overrides, name="run") -> tmp_path/name: this test's copy of a run trained once per session."""
    return lambda overrides, name="run": trained_runs.copy(overrides, tmp_path / name)


@pytest.fixture(scope="session")
def train_script_run(tmp_path_factory):
    """scripts/train.py run once (an MLP of depth 2, 2 epochs) for the tests of what it writes: (CompletedProcess, run folder)."""
    run_dir = tmp_path_factory.mktemp("train-script")
    return run_script("train.py", *FAST_ANY_MODEL, "depth=2", "trainer.epochs=2", f"hydra.run.dir={run_dir}"), run_dir


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST copy; tests needing it skip when it is absent (outside CI)."""
    if not (DATA_DIR / "MNIST" / "raw").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"MNIST copy missing at {DATA_DIR}; set REPLEARN_DATA_DIR")
        pytest.skip(f"no MNIST copy at {DATA_DIR} (set REPLEARN_DATA_DIR)")
    return DATA_DIR
