"""The forward pass of a trained model for one image, summarised layer by layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from replearn.models import LayeredModel
from replearn.recording.hooks import record_activations


@dataclass
class LayerSummary:
    name: str
    shape: tuple[int, ...]
    pre_mean: float  # weighted sum (Linear/Conv output) before norm and activation
    pre_min: float
    pre_max: float
    post_mean: float  # block output (after activation)
    post_max: float
    fraction_zero: float
    unit_values: torch.Tensor  # (U,) per unit, or per channel (spatial mean) for conv maps
    top_units: list[tuple[int, float]]


def _weighted_layer(model: LayeredModel, name: str) -> str:
    if name == "head":
        return "head"
    block = model.get_submodule(name)
    return f"{name}.linear" if hasattr(block, "linear") else f"{name}.conv"


@torch.inference_mode()
def trace_model(model: LayeredModel, image: torch.Tensor, top_units: int = 5) -> tuple[list[LayerSummary], torch.Tensor]:
    """Run one normalized image ``(1, C, H, W)`` through ``model``; return per-layer summaries and logits."""
    model.eval()
    names = model.layer_names()
    pre_names = [_weighted_layer(model, n) for n in names]
    with record_activations(model, list(dict.fromkeys(pre_names + names)), to_cpu=True) as acts:
        logits = model(image)
    summaries = []
    for name, pre_name in zip(names, pre_names):
        pre, post = acts[pre_name][0], acts[name][0]  # drop the batch dim
        units = post.flatten(1).mean(1) if post.dim() == 3 else post  # (C,) channel means for conv maps
        k = min(top_units, units.numel())
        values, indices = units.topk(k)
        summaries.append(LayerSummary(
            name=name, shape=tuple(post.shape),
            pre_mean=float(pre.mean()), pre_min=float(pre.min()), pre_max=float(pre.max()),
            post_mean=float(post.mean()), post_max=float(post.max()),
            fraction_zero=float((post == 0).float().mean()),
            unit_values=units.clone(),
            top_units=[(int(i), float(v)) for i, v in zip(indices, values)],
        ))
    return summaries, logits[0].cpu()


def format_model_trace(summaries: list[LayerSummary], logits: torch.Tensor, label: int | None,
                       classes: list[str] | None = None) -> str:
    """Per layer: shape, weighted-sum range, activation statistics, strongest units; then the prediction."""
    lines = []
    for s in summaries:
        shape = "×".join(map(str, s.shape))
        kind = "channel" if len(s.shape) == 3 else "unit"
        top = ", ".join(f"{kind} {i}: {v:.3g}" for i, v in s.top_units)
        lines.append(f"{s.name:<10} {shape:>10}  weighted sum in [{s.pre_min:.3g}, {s.pre_max:.3g}] (mean {s.pre_mean:.3g})")
        if s.name == "head":
            break
        lines.append(f"{'':<10} {'':>10}  after activation: mean {s.post_mean:.3g}, max {s.post_max:.3g}, "
                     f"{100 * s.fraction_zero:.0f}% zero | strongest {top}")
    probs = logits.softmax(0)
    pred = int(probs.argmax())
    name = (lambda c: classes[c] if classes else str(c))
    verdict = "" if label is None else f" (label {name(label)}: {'correct' if pred == label else 'wrong'})"
    lines.append(f"prediction: {name(pred)} with p={float(probs[pred]):.3f}{verdict}")
    return "\n".join(lines)


def plot_model_trace(summaries: list[LayerSummary], image: torch.Tensor, logits: torch.Tensor,
                     classes: list[str] | None = None) -> Figure:
    """The input image, each layer's unit (or channel-mean) values as a bar strip, and the class probabilities.

    The probability axis is ticked with the class names and the winning class is named on its bar.
    """
    rows = len(summaries) + 1
    fig = Figure(figsize=(9, 1.3 * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    axes[0].imshow(image.squeeze().cpu().numpy(), cmap="gray")
    axes[0].set_title("input image", fontsize=9)
    axes[0].axis("off")
    for ax, s in zip(axes[1:], summaries):
        values = logits.softmax(0) if s.name == "head" else s.unit_values
        ax.bar(range(len(values)), values.numpy(), width=1.0, color="tab:orange" if s.name == "head" else "tab:blue")
        label = "class probability" if s.name == "head" else ("channel mean" if len(s.shape) == 3 else "activation")
        ax.set_ylabel(label, fontsize=8)
        ax.set_title(f"{s.name}  {'×'.join(map(str, s.shape))}  ({100 * s.fraction_zero:.0f}% zero)"
                     if s.name != "head" else "head: softmax of the logits", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlim(-0.5, len(values) - 0.5)
        if s.name == "head":
            names = [classes[c] if classes and c < len(classes) else str(c) for c in range(len(values))]
            win = int(values.argmax())
            ax.set_xticks(range(len(values)), names, fontsize=7)
            ax.set_xlabel("class", fontsize=8)
            ax.set_ylim(0, 1.25)  # headroom for the winner's label
            ax.annotate(f"predicted: {names[win]} (p={float(values[win]):.2f})", (win, float(values[win])),
                        xytext=(0, 3), textcoords="offset points", fontsize=8, fontweight="bold",
                        ha="center" if 0 < win < len(values) - 1 else ("left" if win == 0 else "right"), va="bottom")
    return fig
