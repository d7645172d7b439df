"""The bench's machine line (the threads the suite used, the load average, the busy verdict) and the suite registry."""

import os
import types

import pytest
import torch

from replearn.bench import machine, report, threads
from replearn.bench.machine import BUSY_LINE, busy_reasons, quiet_reference, thread_count
from replearn.conf.validate import validate_bench


def test_busy_when_load_exceeds_cores_or_probe_below_half_of_reference():
    assert busy_reasons(1.9, 2.0, 2, 60.0, 100.0) == []
    assert busy_reasons(None, None, 2, None, None) == []
    assert "before" in busy_reasons(2.5, 1.0, 2, 60.0, 100.0)[0]
    assert "after" in busy_reasons(1.0, 3.1, 2, 60.0, 100.0)[0]
    assert "matmul probe" in busy_reasons(1.0, 1.0, 2, 49.0, 100.0)[0]
    assert busy_reasons(1.0, 1.0, 2, 50.0, 100.0) == []  # exactly half is not below half
    assert busy_reasons(1.0, 1.0, 2, 10.0, None) == []  # no reference yet: the probe alone says nothing
    assert len(busy_reasons(3.0, 3.0, 2, 1.0, 100.0)) == 3


def test_thread_count_prefers_what_the_suite_reports():
    torch.set_num_threads(2)
    assert thread_count({"threads": 1}) == 1
    assert thread_count({"threads": "1 torch thread (auto: other processes use 1.2 of 2 cores)"}) == 1
    assert thread_count({}) == 2
    assert thread_count({"threads": "1, 2"}) == 2  # suite=train measures both: the busy probe takes the larger
    assert thread_count({"threads": "auto"}) == 2


def test_quiet_reference_is_the_best_probe_seen_before(cache_dir):
    assert quiet_reference("cpu X", 1, 50.0) is None
    assert quiet_reference("cpu X", 1, 80.0) == 50.0
    assert quiet_reference("cpu X", 1, 20.0) == 80.0
    assert quiet_reference("cpu X", 2, 20.0) is None  # per thread count
    assert quiet_reference("cpu X", 1, 500.0, record=False) == 80.0  # taken on a loaded machine: not kept
    assert quiet_reference("cpu X", 1, 20.0) == 80.0
    (cache_dir / "bench" / "matmul_reference.json").write_text("not json")
    assert quiet_reference("cpu X", 1, 30.0) is None  # a broken file is rebuilt, never trusted


def _fake_suite(monkeypatch, threads):
    """replearn.bench.train replaced by a suite that only sets ``threads`` (other imports untouched)."""
    def run(cfg):
        torch.set_num_threads(threads)
        return {"work_seconds": 1.0}

    real = report.importlib.import_module
    fake = types.SimpleNamespace(run=run)
    monkeypatch.setattr(report.importlib, "import_module",
                        lambda name, *a: fake if name == "replearn.bench.train" else real(name, *a))


@pytest.mark.parametrize("load, busy", [(0.1, False), ((os.cpu_count() or 1) + 1.0, True)])
def test_report_prints_threads_used_load_and_busy_line(compose_cfg, tmp_path, capsys, monkeypatch, cache_dir, load, busy):
    torch.set_num_threads(2)
    _fake_suite(monkeypatch, 1)
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(report, "_probe", lambda threads: 100.0 * threads)
    figures = report.run_suite(compose_cfg("bench", ["suite=train"]), tmp_path / "out")
    out = capsys.readouterr().out
    machine_line = next(line for line in out.splitlines() if line.startswith("machine"))
    assert machine_line.endswith(", 1 thread")  # the suite's 1, not torch's 2 from before it ran
    assert figures["threads_used"] == 1 and figures["matmul_probe_gflops"] == 100.0
    assert f"{load:.2f} before, {load:.2f} after" in out
    assert (BUSY_LINE in out) is busy
    # A probe on a loaded machine never becomes the quiet reference.
    assert report.run_suite(compose_cfg("bench", ["suite=train"]), tmp_path / "again")[
        "matmul_quiet_reference_gflops"] == (100.0 if not busy else "none yet (first probe here)")
    assert (tmp_path / "out" / "bench.json").is_file()


def test_report_flags_a_slow_probe_against_the_reference(compose_cfg, tmp_path, capsys, monkeypatch, cache_dir):
    _fake_suite(monkeypatch, 1)
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    rates = iter([100.0, 30.0])
    monkeypatch.setattr(report, "_probe", lambda threads: next(rates))
    report.run_suite(compose_cfg("bench", ["suite=train"]), tmp_path / "a")  # quiet: becomes the reference
    assert BUSY_LINE not in capsys.readouterr().out
    report.run_suite(compose_cfg("bench", ["suite=train"]), tmp_path / "b")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(BUSY_LINE) and "30.0" in last and "100.0" in last


def test_bench_threads_suite_is_registered(compose_cfg, tmp_path, capsys, monkeypatch, cache_dir):
    """suite=threads composes, is one of SUITES, and run_suite hands it to replearn.bench.threads.run."""
    cfg = compose_cfg("bench", ["suite=threads"])
    validate_bench(cfg)
    assert "threads" in report.SUITES
    calls = []
    monkeypatch.setattr(threads, "run", lambda cfg: calls.append(cfg.suite) or {"threads": "1, 2", "work_seconds": 1.0})
    monkeypatch.setattr(report, "_probe", lambda count: 100.0)
    figures = report.run_suite(cfg, tmp_path / "out")
    assert calls == ["threads"] and figures["work_seconds"] == 1.0 and figures["threads_used"] == 2
    assert capsys.readouterr().out.startswith("== bench suite=threads ==")
    assert (tmp_path / "out" / "bench.json").is_file()
