"""Draws docs/images/shapes_result.png from the two shapes sweeps' depth reports.

    python docs/images/shapes_result.py multirun/depth_shapes_parts multirun/depth_shapes_strokes

Each sweep folder must hold depth_report/summary.csv (scripts/compare_depth.py writes it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from report_rows import rows  # noqa: E402  (this folder: the scripts run as python docs/images/<name>.py)

PANELS = (("dissect_fraction_l2", "units labelled with a part (after the null)"),
          ("dissect_iou_vs_ceiling_l2", "best part IoU / its ceiling (mean over units)"),
          ("concept_probe_l2", "within-class part probe R²"),
          ("dissect_fraction_l3", "units labelled with an object (after the null)"))




def main(parts: Path, strokes: Path, out: Path) -> None:
    fig = Figure(figsize=(15, 3.6), layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    for ax, (metric, title) in zip(axes, PANELS):
        curves = ((parts, "trained on objects", "#1f5fa8"), (strokes, "trained on the strokes twin", "#d9822b"))
        for sweep, label, colour in curves:
            r = rows(sweep, metric)
            x = [float(v["position"]) for v in r]
            mean = [float(v["trained_mean"]) for v in r]
            ci = [float(v["trained_ci95"] or 0) for v in r]
            ax.errorbar(x, mean, yerr=ci, marker="o", ms=4, capsize=2, color=colour, label=label)
        r = rows(parts, metric)  # the random-init control is the same networks before training in both sweeps
        ax.plot([float(v["position"]) for v in r], [float(v["control_mean"]) for v in r], "--", color="grey",
                label="random init")
        if r and r[0].get("shuffled_labels_mean"):
            ax.plot([float(v["position"]) for v in r], [float(v["shuffled_labels_mean"] or "nan") for v in r], "-.",
                    color="black", label="objects, shuffled labels")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("relative layer position (depth-8 CNN; 1 = logits)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("Shapes world, depth-8 CNNs, 3 seeds (mean ± 95% CI): the same images, two labellings", fontsize=11)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(__file__).with_name("shapes_result.png"))
