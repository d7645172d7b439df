"""Page benchmark: the training command against a first and a second visualize of the run it made.

``python scripts/bench.py suite=page`` (``model=cnn depth=4`` for the CNN) trains ``model`` at ``depth``
with its training recipe, then draws the run's page twice, each command a process of its own as a
user types it (start-up included); ``repeats`` times, each time into a new run, medians reported.
Targets: a first page <= 1.0x the training command; a second page's work other than drawing <= 5 s.
The pages run with their figure calls timed (every ``plot_*`` function and ``Figure.savefig``), so
drawing is split off; the timers cost nothing measurable.

The runs and the pages' reuse cache (``visualize_*``) live in a temporary folder; the dataset
caches (concept masks, act-max priors, the reference classifier, ...) are the user's, linked in:
the target assumes them warm (a fresh machine builds them once, on its first page).
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from replearn.cache import cache_dir
from replearn.errors import ReplearnError

FIRST_PAGE_TARGET_RATIO = 1.0
SECOND_PAGE_TARGET_SECONDS = 5.0  # plus drawing
# The per-user caches a page reads that do not depend on the run: kept warm (linked from the user's cache).
DATASET_CACHES = ("concepts", "actmax_priors", "recognizability_stats", "reference_classifiers", "shapes")
DRAWING_LINE = "replearn-bench page drawing seconds:"
TRAIN = "from replearn.cli.commands import train_command; train_command()"
# replearn-visualize with its drawing timed, in a process of its own (as controls.TRAIN_COMMAND runs a training):
# the line is printed at exit, also when Hydra ends the process with sys.exit.
PAGE = ("import atexit\nfrom replearn.bench.page import install_drawing_timers, report_drawing\n"
        "atexit.register(report_drawing, install_drawing_timers())\n"
        "from replearn.cli.commands import visualize_command\nvisualize_command()")


def _timed(fn, spent: dict):
    """``fn`` adding its wall time to ``spent["drawing"]`` (nested calls counted once)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if spent["depth"]:
            return fn(*args, **kwargs)
        spent["depth"] += 1
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent["drawing"] += time.perf_counter() - start
            spent["depth"] -= 1
    wrapper.__page_timer__ = True
    return wrapper


def install_drawing_timers() -> dict:
    """Time every figure call of a page: ``Figure.savefig`` and each ``plot_*`` function of replearn.viz, where the
    page's modules imported it too. Returns the counter ``{"drawing": seconds, ...}``."""
    import matplotlib.figure  # lazy: matplotlib and the page's modules (torch) load in the page's own process only

    import replearn.visualize  # lazy: as matplotlib
    import replearn.viz  # lazy: as matplotlib

    spent = {"drawing": 0.0, "depth": 0}
    matplotlib.figure.Figure.savefig = _timed(matplotlib.figure.Figure.savefig, spent)
    for package in (replearn.viz, replearn.visualize):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for name in dir(module):
                value = getattr(module, name)
                if name.startswith("plot_") and callable(value) and not getattr(value, "__page_timer__", False):
                    setattr(module, name, _timed(value, spent))
    return spent


def report_drawing(spent: dict) -> None:
    """Print the drawing's seconds (the last line of a timed page, read back by :func:`drawing_seconds`)."""
    print(f"{DRAWING_LINE} {spent['drawing']:.3f}", flush=True)


def _command(code: str, overrides: list[str], env: dict) -> tuple[float, str]:
    """(wall seconds, output) of ``python -c code overrides...``; a failure is one ReplearnError line."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *overrides], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        raise ReplearnError(f"suite=page: {' '.join(overrides)} failed ({tail[0]}); run it by hand to see why")
    return seconds, done.stdout


def drawing_seconds(output: str) -> float:
    """The drawing time a timed page printed (:func:`report_drawing`)."""
    for line in reversed(output.splitlines()):
        if line.startswith(DRAWING_LINE):
            return float(line[len(DRAWING_LINE):])
    raise ReplearnError("suite=page: the page printed no drawing time; is replearn installed from this checkout?")


def linked_cache(folder: Path) -> Path:
    """A cache folder holding links to the user's dataset caches and nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in DATASET_CACHES:
        source = cache_dir(sub)
        if source.is_dir():
            (folder / sub).symlink_to(source, target_is_directory=True)
    return folder


def run(cfg) -> dict:
    """Train, then draw the page twice, ``repeats`` times; medians and ratios."""
    model, depth = str(cfg.model.name), int(cfg.depth)
    repeats = max(1, int(cfg.get("repeats", 3)))
    times: dict[str, list[float]] = {"train": [], "first": [], "second": [], "first_drawing": [], "second_drawing": []}
    with tempfile.TemporaryDirectory(prefix="replearn-page-") as tmp:
        env = {**os.environ, "REPLEARN_CACHE_DIR": str(linked_cache(Path(tmp) / "cache"))}
        for rep in range(repeats):
            run_dir = Path(tmp) / f"run{rep}"
            for sub in Path(env["REPLEARN_CACHE_DIR"]).glob("visualize_*"):  # each first page computes afresh
                shutil.rmtree(sub)
            seconds, _ = _command(TRAIN, [f"model={model}", f"depth={depth}", f"hydra.run.dir={run_dir}"], env)
            times["train"].append(seconds)
            for page in ("first", "second"):
                seconds, output = _command(PAGE, [f"run={run_dir}"], env)
                times[page].append(seconds)
                times[f"{page}_drawing"].append(drawing_seconds(output))
    med = {key: statistics.median(values) for key, values in times.items()}
    second_rest = med["second"] - med["second_drawing"]
    return {
        "page_setup": f"{model} depth {depth}: train.py, then visualize.py twice on its run; medians of {repeats}, "
                      "each command a process of its own",
        "train_command_seconds": round(med["train"], 2),
        "first_page_seconds": round(med["first"], 2),
        "first_page_drawing_seconds": round(med["first_drawing"], 2),
        "second_page_seconds": round(med["second"], 2),
        "second_page_drawing_seconds": round(med["second_drawing"], 2),
        "second_page_without_drawing_seconds": round(second_rest, 2),
        "all_seconds": "; ".join(f"{k} " + ", ".join(f"{v:.1f}" for v in vals) for k, vals in times.items()),
        "first_page_over_training": round(med["first"] / med["train"], 2),
        "first_page_over_training_target": FIRST_PAGE_TARGET_RATIO,
        "second_page_without_drawing_target_seconds": SECOND_PAGE_TARGET_SECONDS,
        "meets_targets": (med["first"] / med["train"] <= FIRST_PAGE_TARGET_RATIO
                          and second_rest <= SECOND_PAGE_TARGET_SECONDS),
    }
