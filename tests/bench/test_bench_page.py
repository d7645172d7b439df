"""suite=page: drawing is timed apart from the rest of a page, the dataset caches stay warm, the suite composes."""

from __future__ import annotations

import time

import pytest

from replearn.bench import page
from replearn.conf.validate import validate_bench
from replearn.errors import ReplearnError


def test_drawing_timers_count_nested_figure_calls_once():
    spent = {"drawing": 0.0, "depth": 0}

    def savefig():
        time.sleep(0.02)

    timed_save = page._timed(savefig, spent)

    def plot_thing():  # a plot function that saves inside: its time is counted once
        time.sleep(0.03)
        timed_save()

    page._timed(plot_thing, spent)()
    assert 0.05 <= spent["drawing"] < 0.2 and spent["depth"] == 0
    timed_save()
    assert 0.07 <= spent["drawing"] < 0.3


def test_the_drawing_line_is_read_back_and_its_absence_is_one_line():
    assert page.drawing_seconds(f"wrote 28 figures\n{page.DRAWING_LINE} 4.250\n") == 4.25
    with pytest.raises(ReplearnError, match="printed no drawing time"):
        page.drawing_seconds("wrote 28 figures\n")


def test_only_the_dataset_caches_are_linked(tmp_path, monkeypatch):
    user = tmp_path / "user"
    for sub in ("concepts", "actmax_priors", "visualize_dissection"):
        (user / sub).mkdir(parents=True)
    monkeypatch.setenv("REPLEARN_CACHE_DIR", str(user))
    linked = page.linked_cache(tmp_path / "bench")
    assert sorted(p.name for p in linked.iterdir()) == ["actmax_priors", "concepts"]  # no page reuse: pages compute
    assert (linked / "concepts").resolve() == (user / "concepts").resolve()


def test_suite_page_composes(compose_cfg):
    validate_bench(compose_cfg("bench", ["suite=page", "model=cnn", "depth=4"]))
