"""Forward-propagation trace: the YAML network node by node, its drawing, and a trained model layer by layer."""

from __future__ import annotations

import matplotlib.image
import pytest
import torch
import yaml
from figure_text import outside_figure, overlapping, text_boxes
from helpers import run_script
from omegaconf import OmegaConf

from replearn.conf import CONFIG_DIR
from replearn.errors import ReplearnError
from replearn.trace import (
    draw_network,
    format_model_trace,
    format_trace,
    forward_trace,
    load_network,
    plot_model_trace,
    trace,
    trace_model,
)

COURSE = CONFIG_DIR / "networks" / "course_example.yaml"


def write_network(path, spec) -> str:
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_course_example_reproduces_the_first_hidden_layer():
    result = forward_trace(load_network(COURSE))
    first = result.layers[0]
    assert result.inputs == [3, 5]
    assert [n.weighted_sum for n in first.nodes] == [26, -13]
    assert first.outputs == [26, 0]
    text = format_trace(result)
    assert "3·2 + 5·4 = 6 + 20 = 26 -> ReLU -> 26" in text
    assert "3·4 + 5·(-5) = 12 - 25 = -13 -> ReLU -> 0" in text
    # Integral values print without ".0", whichever layer they come from.
    assert ".0 " not in text and not text.rstrip().endswith(".0")


def test_three_hidden_layers_match_a_torch_forward_pass(tmp_path):
    gen = torch.Generator().manual_seed(1)
    widths, layers = [4, 3, 5, 2, 1], []
    for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
        w = torch.randint(-3, 4, (fan_out, fan_in), generator=gen)
        b = torch.randint(-2, 3, (fan_out,), generator=gen)
        last = i == len(widths) - 2
        layers.append({"name": "output" if last else f"hidden {i + 1}", "activation": "linear" if last else "relu",
                       "nodes": [{"weights": w[j].tolist(), "bias": int(b[j])} for j in range(fan_out)]})
    spec = {"inputs": [1, -2, 3, 2], "layers": layers}
    result = forward_trace(load_network(write_network(tmp_path / "net.yaml", spec)))
    # An independent computation of the same network with integer tensors.
    x = torch.tensor(spec["inputs"])
    for layer in layers:
        w = torch.tensor([n["weights"] for n in layer["nodes"]])
        b = torch.tensor([n["bias"] for n in layer["nodes"]])
        z = w @ x + b
        x = z.clamp(min=0) if layer["activation"] == "relu" else z
    assert len(result.layers) == 4
    assert result.layers[-1].outputs == x.tolist()
    assert "hidden 3 (relu):" in format_trace(result)
    assert all(isinstance(v, int) for layer in result.layers for v in layer.outputs)


def test_shape_mismatch_names_layer_and_node(tmp_path):
    spec = yaml.safe_load(COURSE.read_text())
    spec["layers"][1]["nodes"][1]["weights"] = [1, 2, 3]
    with pytest.raises(ReplearnError, match=r"layer 'hidden 2' node 1 has 3 weights.*give it 2 weights"):
        load_network(write_network(tmp_path / "bad.yaml", spec))


@pytest.mark.parametrize("content, message", [
    ("inputs: [1, 2]\nlayers:\n  - name: h\n    activation: softplus\n    nodes: [{weights: [1, 1]}]\n",
     r"layer 'h' has activation 'softplus'; choose one of"),
    ("inputs: [1, 2]\nlayers:\n  - name: h\n    nodes: [{weights: [1, x]}]\n", r"layer 'h' node 0 weight 1"),
    ("inputs: [1, 2\nlayers: [", r"not valid YAML"),
    ("inputs: [1, 2]\n", r"needs an 'inputs' list and a 'layers' list"),
])
def test_bad_network_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "net.yaml"
    path.write_text(content)
    with pytest.raises(ReplearnError, match=message) as info:
        load_network(path)
    assert "\n" not in str(info.value)


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(ReplearnError, match=r"nowhere\.yaml not found; pass network="):
        load_network(tmp_path / "nowhere.yaml")


def test_drawing_renders_headless_to_png(tmp_path):
    fig = draw_network(forward_trace(load_network(COURSE)))
    path = tmp_path / "net.png"
    fig.savefig(path)  # no bbox_inches: the file's pixel size is the figure's
    assert path.stat().st_size > 0
    width, height = fig.get_size_inches() * fig.dpi
    assert matplotlib.image.imread(path).shape[:2] == (round(height), round(width))
    # One circle per input and per node.
    assert len(fig.axes[0].patches) == 2 + 2 + 3 + 1


@pytest.mark.parametrize("build", [
    lambda: __import__("replearn.models", fromlist=["MLP"]).MLP(depth=3, width=12),
    lambda: __import__("replearn.models", fromlist=["CNN"]).CNN(depth=3, channels=4, max_channels=8),
])
def test_trace_model_records_every_layer(build):
    model = build().eval()
    image = torch.randn(1, 1, 28, 28)
    summaries, logits = trace_model(model, image, top_units=3)
    assert [s.name for s in summaries] == model.layer_names()
    torch.testing.assert_close(logits, model(image)[0].detach())
    # The first block's post-activation values, recomputed by hand (no norm in the MLP; BN in eval in the CNN).
    block = model.blocks[0]
    x = image.flatten(1) if hasattr(block, "linear") else image
    post = block(x)[0].detach()
    first = summaries[0]
    assert first.shape == tuple(post.shape)
    assert first.fraction_zero == pytest.approx(float((post == 0).float().mean()))
    assert first.post_max == pytest.approx(float(post.max()))
    assert len(first.top_units) == 3
    assert first.top_units[0][1] == pytest.approx(float(first.unit_values.max()))
    text = format_model_trace(summaries, logits, label=int(logits.argmax()))
    assert f"prediction: {int(logits.argmax())}" in text and "correct" in text
    fig = plot_model_trace(summaries, image[0], logits)
    assert len(fig.axes) == len(summaries) + 1
    names = [f"c{i}" for i in range(len(logits))]
    head = plot_model_trace(summaries, image[0], logits, classes=names).axes[-1]
    assert [t.get_text() for t in head.get_xticklabels()] == names
    win = int(logits.argmax())
    assert [t.get_text() for t in head.texts] == [f"predicted: c{win} (p={float(logits.softmax(0)[win]):.2f})"]


def test_compose_and_trace_write_text_and_png(compose_cfg, tmp_path):
    cfg = compose_cfg("trace", [f"network={COURSE}"])
    text = trace(cfg, tmp_path)
    assert "= 26 -> ReLU -> 26" in text
    assert (tmp_path / "trace.txt").read_text().strip() == text.strip()
    assert (tmp_path / "trace.png").stat().st_size > 0
    with pytest.raises(Exception, match="image_index"):
        compose_cfg("trace", ["image_index=first"])


def test_trace_run_mode_on_a_tiny_saved_run(compose_cfg, tmp_path):
    from replearn.models import build_model
    from replearn.runs.checkpoint import save_checkpoint

    cfg = compose_cfg("train", ["data=synthetic", "data.num_train=60", "data.num_test=20", "data.val_size=10",
                                "depth=2", "model.width=8"])
    model = build_model(**OmegaConf.to_container(cfg.model, resolve=True))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_checkpoint({"model": model.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True)},
                    run_dir / "checkpoint.pt")
    out = tmp_path / "out"
    text = trace(compose_cfg("trace", [f"run={run_dir}", "image_index=3"]), out)
    for name in model.layer_names():
        assert name in text
    assert "prediction:" in text and "label" in text
    assert (out / "trace.png").stat().st_size > 0
    with pytest.raises(ReplearnError, match="image_index=99"):
        trace(compose_cfg("trace", [f"run={run_dir}", "image_index=99"]), out)


def test_script_prints_the_course_example(tmp_path):
    proc = run_script("trace.py", f"hydra.run.dir={tmp_path}", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3·2 + 5·4 = 6 + 20 = 26 -> ReLU -> 26" in proc.stdout
    assert (tmp_path / "trace.png").is_file()



@pytest.mark.parametrize("spec", [
    None,  # the course example
    {"inputs": [1, -2, 0.5], "layers": [
        {"name": "h", "activation": "relu",
         "nodes": [{"weights": [0.25 * (i + j) - 1, -1.5, 2], "bias": 0.5 - i} for i, j in zip(range(4), range(4))]},
        {"name": "out", "activation": "linear", "nodes": [{"weights": [1, -1, 0.5, 2]}, {"weights": [-3, 1, 1, 1]}]},
    ]},
])
def test_drawing_shows_bias_and_legend_with_no_overlapping_labels(spec):
    trace = forward_trace(load_network(COURSE) if spec is None else spec)
    fig = draw_network(trace)
    boxes = text_boxes(fig)
    labels = [text for text, _ in boxes]
    assert not overlapping(boxes)
    assert not outside_figure(fig)
    legend = fig.axes[0].get_legend()
    assert legend is not None and {"positive weight", "bias, added into Σ"} <= {t.get_text() for t in legend.texts}
    n_weights = sum(len(node.weights) for layer in trace.layers for node in layer.nodes)
    n_biases = sum(1 for layer in trace.layers for node in layer.nodes if node.bias)
    assert sum(1 for t in labels if t.startswith("b = ")) == n_biases
    assert len(fig.axes[0].texts) == n_weights + n_biases + len(trace.inputs) + 2 * sum(
        len(layer.nodes) for layer in trace.layers) + len(trace.layers) + 1
    if spec is None:
        assert "b = -6" in labels and "Σ = 26 − 6 = 20" in labels
