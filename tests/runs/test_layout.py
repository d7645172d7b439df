"""The run folder's readers: one per file, one rule (torn or foreign rows dropped with one warning line)."""

import json
import math

import pytest
import torch
import yaml

from replearn.runs import layout
from replearn.runs.layout import (
    json_safe,
    load_json,
    read_analysis,
    read_config,
    read_final,
    read_metrics,
    read_multirun,
    read_overrides,
    read_resumes,
    read_sweep_progress,
)

ROW = {"epoch": 1, "train_loss": 0.5, "val_acc": 0.9}


def _lines(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _warnings(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("reader,name,row", [
    (read_metrics, layout.METRICS, ROW),
    (read_resumes, layout.RESUMES, {"after_epoch": 2, "changes": {}}),
    (read_sweep_progress, layout.SWEEP_PROGRESS, {"job": "depth=1", "status": "COMPLETED", "time": 1.0}),
])
def test_a_torn_last_line_is_dropped_with_one_warning_naming_the_count(tmp_path, capsys, reader, name, row):
    (tmp_path / name).write_text(_lines(row, row) + json.dumps(row)[:9])  # killed mid-write: no newline
    assert reader(tmp_path) == [row, row]
    lines = _warnings(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: dropped 1 row of ") and str(tmp_path / name) in lines[0]


@pytest.mark.parametrize("reader,name", [(read_metrics, layout.METRICS), (read_resumes, layout.RESUMES)])
def test_garbage_in_the_middle_counts_too(tmp_path, capsys, reader, name):
    (tmp_path / name).write_text(_lines(ROW, "\x00\x01garbage{", "[1, 2]", ROW) + '{"epoch": 3, "tr')
    assert reader(tmp_path) == [ROW, ROW]
    lines = _warnings(capsys)
    assert len(lines) == 1 and "dropped 3 rows of" in lines[0] and name in lines[0], lines


def test_metrics_rows_need_an_integer_epoch(tmp_path, capsys):
    (tmp_path / layout.METRICS).write_text(_lines(ROW, {"val_acc": 0.9}, {"epoch": "2"}, {**ROW, "epoch": 2}))
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2]
    assert "dropped 2 rows" in capsys.readouterr().err


def test_clean_and_absent_files_read_silently(tmp_path, capsys):
    assert read_metrics(tmp_path) == [] and read_resumes(tmp_path) == [] and read_sweep_progress(tmp_path) == []
    (tmp_path / layout.METRICS).write_text(_lines(ROW, ROW) + "\n")  # a blank line is no row, and no damage
    assert read_metrics(tmp_path) == [ROW, ROW]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("content", [None, "", "{not json", "[1]", b"\x80\x81binary"])
def test_final_and_analysis_are_a_dict_or_none(tmp_path, content):
    for name, reader in ((layout.FINAL, read_final), (layout.ANALYSIS, read_analysis)):
        if content is not None:
            (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        assert reader(tmp_path) is None
    assert load_json(tmp_path / layout.FINAL) == ([1] if content == "[1]" else None)  # the raw document
    (tmp_path / layout.FINAL).write_text(json.dumps({"status": "ok"}))
    assert read_final(tmp_path) == {"status": "ok"}


def test_config_overrides_and_multirun(tmp_path):
    assert read_config(tmp_path) is None and read_overrides(tmp_path) is None and read_multirun(tmp_path) is None
    (tmp_path / layout.CONFIG).write_text("model: null\n")
    assert read_config(tmp_path) is None  # a config without a model section is not a run's config
    (tmp_path / layout.HYDRA).mkdir()
    (tmp_path / layout.HYDRA / layout.CONFIG).write_text(yaml.safe_dump({"model": {"name": "mlp"}, "seed": 0}))
    assert read_config(tmp_path / layout.HYDRA)["seed"] == 0
    (tmp_path / layout.HYDRA / layout.HYDRA_OVERRIDES).write_bytes(b"\xff\xfe binary")
    assert read_overrides(tmp_path) is None
    (tmp_path / layout.HYDRA / layout.HYDRA_OVERRIDES).write_text(yaml.safe_dump(["depth=3"]))
    assert read_overrides(tmp_path) == ["depth=3"]
    (tmp_path / layout.MULTIRUN).write_text(yaml.safe_dump({"hydra": {"sweeper": {}}}))
    assert read_multirun(tmp_path) == {"hydra": {"sweeper": {}}}


def test_json_safe_makes_strict_json():
    value = {1: [math.nan, 1.5, (math.inf, 2)], "t": torch.tensor([0.5, float("nan")])}
    assert json_safe(value) == {"1": [None, 1.5, [None, 2]], "t": [0.5, None]}
    json.dumps(json_safe(value), allow_nan=False)
