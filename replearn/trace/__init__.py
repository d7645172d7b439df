"""Forward-propagation traces: a hand-written network node by node, or a trained model layer by layer."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from replearn.conf import CONFIG_DIR
from replearn.errors import ReplearnError
from replearn.runs.load import load_run, resolve_run_dir
from replearn.trace.draw import draw_network
from replearn.trace.model_trace import format_model_trace, plot_model_trace, trace_model
from replearn.trace.network import format_trace, forward_trace, load_network

# More lines than this are only written to trace.txt (the first ones are printed).
MAX_PRINTED_LINES = 200

__all__ = ["trace", "draw_network", "forward_trace", "format_trace", "load_network", "trace_model",
           "format_model_trace", "plot_model_trace"]


def default_network() -> Path:
    return CONFIG_DIR / "networks" / "course_example.yaml"


def trace(cfg: DictConfig, output_dir: str | Path) -> str:
    """Print the trace (a YAML network, or ``run=<dir>`` for a trained model); write trace.txt and trace.png."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.run:
        text, fig = _trace_run(cfg)
    else:
        network = load_network(cfg.network or default_network())
        result = forward_trace(network)
        text, fig = format_trace(result), draw_network(result) if cfg.draw else None
    (output_dir / "trace.txt").write_text(text + "\n")
    lines = text.splitlines()
    if len(lines) > MAX_PRINTED_LINES:  # a big network's trace is read in the file, not scrolled past
        print("\n".join(lines[:MAX_PRINTED_LINES]))
        print(f"... {len(lines) - MAX_PRINTED_LINES:,} more lines in {output_dir / 'trace.txt'}")
    else:
        print(text)
    if fig is not None and cfg.draw:
        fig.savefig(output_dir / "trace.png", bbox_inches="tight")
        print(f"\nfigure: {output_dir / 'trace.png'}")
    return text


def _trace_run(cfg: DictConfig):
    run = load_run(resolve_run_dir(cfg.run))
    splits = run.splits()
    if cfg.top_units < 1:
        raise ReplearnError(f"top_units={cfg.top_units} is invalid: must be an integer >= 1")
    if not 0 <= cfg.image_index < len(splits.test_x):
        raise ReplearnError(f"image_index={cfg.image_index} is invalid: choose 0..{len(splits.test_x) - 1}")
    image = splits.normalize(splits.test_x[cfg.image_index:cfg.image_index + 1])  # (1, 1, 28, 28)
    label = int(splits.test_y[cfg.image_index])
    summaries, logits = trace_model(run.model, image, cfg.top_units)
    header = f"{run.run_dir}: test image {cfg.image_index} (label {splits.classes[label]})\n"
    text = header + format_model_trace(summaries, logits, label, splits.classes)
    return text, plot_model_trace(summaries, splits.test_x[cfg.image_index].float(), logits, list(splits.classes))
