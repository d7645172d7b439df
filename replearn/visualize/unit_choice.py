"""Which units the run page shows, and the words it says about them (dead units, failed act-max, sparsity)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from replearn.recording.hooks import resolve_layers
from replearn.recording.receptive_field import receptive_field_box, receptive_fields
from replearn.recording.topk import TopK
from replearn.viz.grid import short_number
from replearn.viz.summary import SummaryRow
from replearn.viz.topk_plot import FAINT, context_crops


def most_responsive(top: TopK, count: int) -> tuple[list[int], TopK]:
    """The ``count`` units with the highest mean top-k activation, strongest first, and their rows of ``top``.

    Ties keep the lower unit index first, so the choice is the same on every run.
    """
    score = top.values.float().mean(dim=1)  # (U,)
    order = torch.sort(score, descending=True, stable=True).indices[:count]
    positions = top.positions[order] if top.positions is not None else None
    return order.tolist(), TopK(top.values[order], top.indices[order], positions)


CONTEXT_SIDE = 14  # smallest top-k window (px): a 3x3 field is shown inside the stroke it sits on


def context_examples(images: torch.Tensor, top: TopK, model: torch.nn.Module, layer: str) -> tuple[torch.Tensor, str]:
    """Each conv maximum's window (receptive field bright, the digit around it faint) and the caption's note."""
    height = images.shape[-1]
    size = receptive_fields(model, height)[resolve_layers(model, [layer])[0]][0]
    side = min(height, max(CONTEXT_SIDE, 2 * size))
    boxes = torch.tensor([[receptive_field_box(model, layer, int(y), int(x), image_size=height) for y, x in row]
                          for row in top.positions.tolist()])  # (U, k, 4)
    field = min(size, height)
    note = (f"{side}x{side} px windows around each maximum: its {field}x{field} px receptive field at full "
            f"contrast, the digit around it at {FAINT:.0%} brightness")
    return context_crops(images, top.indices, boxes, side), note


SUMMARY_UNITS, SUMMARY_EXAMPLES = 4, 3


def summary_row(layer: str, units: Sequence[int], names: Sequence[str] | None, top: TopK, examples: torch.Tensor,
                actmax: torch.Tensor, objective: torch.Tensor, dead: torch.Tensor | None, kind: str,
                concepts: Sequence[str | None] | None = None) -> SummaryRow:
    """The layer's row of the opening figure: its strongest units, skipping dead ones and failed act-max.

    ``concepts`` (one per unit of the layer, None if unlabelled) replaces the activation in a unit's label
    by its dissection label.
    """
    score = top.values.float().mean(dim=1)  # (U,); hidden units arrive sorted already, class logits do not
    order = torch.sort(score, descending=True, stable=True).indices.tolist()
    good = [i for i in order if float(objective[i]) > 0 and not (dead is not None and bool(dead[i]))]
    pick = (good or order)[:SUMMARY_UNITS]
    def label(i: int) -> str:
        who = f"class {names[i]}" if names else f"{kind} {units[i]}"
        concept = concepts[units[i]] if concepts is not None else None
        return f"{who}: {concept}" if concept else f"{who}: max {short_number(float(top.values[i, 0]))}"

    labels = [label(i) for i in pick]
    return SummaryRow(layer, labels, examples[pick, :SUMMARY_EXAMPLES].float(), actmax[pick])


def activation_caption(act: torch.Tensor, units: Sequence[int], layer: str, kind: str, n_inputs: int) -> str:
    """Caption of the activation heatmap, with the whole layer's sparsity (the heatmap shows only ``units``)."""
    shown = "all" if len(units) == act.shape[1] else f"the {len(units)} most responsive of the {act.shape[1]}"
    zero = float((act == 0).float().mean())
    return (f"Activations of {shown} {kind}s of {layer} (columns) for {n_inputs} test inputs (rows): how "
            f"input-specific the code is. Over all {act.shape[1]} {kind}s, {zero:.0%} of these inputs' "
            "activations are exactly 0.")


def failed_note(objective: torch.Tensor) -> str:
    """Caption tail for act-max images that ended at activation <= 0 (drawn faded, labelled failed)."""
    failed = int((objective.detach().cpu() <= 0).sum())
    if not failed:
        return ""
    return (f" {failed} of {len(objective)} ended at activation <= 0 (the ascent never made them fire): "
            "they are faded and labelled failed.")
