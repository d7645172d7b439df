"""Hostile or huge network files: an alias bomb, deep nesting and binary bytes give one line; a network of 100,000
nodes is traced and drawn in part, with a note saying so (issue 19, sections 4 and 6)."""

from __future__ import annotations

import os
import resource
import time

import pytest
from helpers import one_line_error, run_script
from omegaconf import OmegaConf

from replearn.errors import ReplearnError
from replearn.trace import draw as draw_module
from replearn.trace import draw_network, forward_trace, load_network, safe_yaml, trace
from replearn.trace.network import LayerTrace, NetworkTrace


def alias_bomb(path, levels: int = 30) -> None:
    """~2 KB of YAML whose aliases of aliases expand to 10**30 numbers."""
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    path.write_text("\n".join(lines) + f"\ninputs: *a{levels - 1}\nlayers: []\n")


def wide_network(path, nodes: int) -> None:
    """Two inputs, a hidden layer of ``nodes`` nodes, and one output node that sums them all."""
    lines = ["inputs: [1, 2]", "layers:", "  - name: wide", "    nodes:"]
    lines += [f"      - {{weights: [1, {(-1) ** i}], bias: {i % 3}}}" for i in range(nodes)]
    lines += ["  - name: out", "    activation: linear", "    nodes:", "      - weights: [" + ", ".join(["1"] * nodes) + "]"]
    path.write_text("\n".join(lines) + "\n")


def test_alias_bomb_is_refused_in_one_line_without_expanding_it(tmp_path):
    path = tmp_path / "bomb.yaml"
    alias_bomb(path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ReplearnError, match=r"more than 2,000,000 values once its aliases .* are expanded") as info:
        load_network(path)
    assert "\n" not in str(info.value) and time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: nothing was expanded


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("w: &w [1, -1]\ninputs: [1, 2]\nlayers:\n  - nodes: [{weights: *w}, {weights: *w, bias: 1}]\n")
    assert [n.output for n in forward_trace(load_network(path)).layers[0].nodes] == [0, 0]


@pytest.mark.parametrize("content, message", [
    ("inputs: " + "[" * 100_000 + "]" * 100_000 + "\n", r"nests lists or mappings more than 64 levels deep"),
    ("inputs: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n", r"more than 64 levels deep"),
    (bytes(range(256)) * 20, r"is not a UTF-8 text file"),
    ("inputs: *nowhere\n", r"not valid YAML"),
])
def test_deep_or_binary_files_give_one_line(tmp_path, content, message):
    path = tmp_path / "net.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ReplearnError, match=message) as info:
        load_network(path)
    assert "\n" not in str(info.value)


def test_oversized_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_yaml, "MAX_BYTES", 100)
    path = tmp_path / "net.yaml"
    path.write_text("inputs: [1, 2]\n" + "# padding\n" * 20)
    with pytest.raises(ReplearnError, match=r"a network file may be at most"):
        load_network(path)


def test_a_big_network_is_drawn_in_part_with_a_note(tmp_path):
    path = tmp_path / "wide.yaml"
    wide_network(path, 3000)
    result = forward_trace(load_network(path))
    start = time.perf_counter()
    fig = draw_network(result)
    fig.savefig(tmp_path / "wide.png")
    assert time.perf_counter() - start < 20
    ax = fig.axes[0]
    assert len(ax.patches) == 2 + draw_module.MAX_COLUMN_NODES + 1  # inputs, the first nodes, the output
    assert "Drawn: 19 of 3,003 nodes (at most 16 nodes per column)" in ax.get_title()
    # The drawn output still shows its true sum over all 3,000 hidden nodes.
    total = result.layers[-1].nodes[0].weighted_sum
    assert any(t.get_text() == f"Σ = {total}" for t in ax.texts)
    # A small network is drawn whole, without a note.
    small = NetworkTrace([1, 2], [LayerTrace("h", "relu", result.layers[0].nodes[:3])])
    assert draw_module.readable_part(small) == (small, None)


def test_many_layers_are_cut_after_the_first_ones(tmp_path):
    path = tmp_path / "deep.yaml"
    layers = "".join("  - nodes: [{weights: [1]}]\n" for _ in range(30))
    path.write_text(f"inputs: [1]\nlayers:\n{layers}")
    part, note = draw_module.readable_part(forward_trace(load_network(path)))
    assert len(part.layers) == draw_module.MAX_COLUMNS - 1
    assert note is not None and "the first 9 of 30 layers" in note


def test_trace_prints_the_start_and_writes_everything(tmp_path, capsys):
    path = tmp_path / "wide.yaml"
    wide_network(path, 500)
    trace(OmegaConf.create({"run": None, "network": str(path), "draw": False}), tmp_path / "out")
    out = capsys.readouterr().out
    assert "more lines in" in out and len(out.splitlines()) < 210
    assert len((tmp_path / "out" / "trace.txt").read_text().splitlines()) > 500


@pytest.mark.slow
def test_script_on_hostile_files_and_100k_nodes(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    alias_bomb(bomb)
    assert "aliases" in one_line_error(run_script("trace.py", f"network={bomb}", f"hydra.run.dir={tmp_path / 'a'}"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(os.urandom(4096))
    assert "UTF-8" in one_line_error(run_script("trace.py", f"network={binary}", f"hydra.run.dir={tmp_path / 'b'}"))
    wide = tmp_path / "wide.yaml"
    wide_network(wide, 100_000)
    start = time.perf_counter()
    proc = run_script("trace.py", f"network={wide}", f"hydra.run.dir={tmp_path / 'c'}", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.perf_counter() - start < 90 and (tmp_path / "c" / "trace.png").is_file()
    assert "more lines in" in proc.stdout
