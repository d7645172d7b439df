"""Draws docs/images/finding.png from the MNIST CNN sweep's depth report.

    python docs/images/finding.py multirun/depth_cnn

The sweep folder must hold depth_report/summary.csv (scripts/compare_depth.py writes it). The figure shows
the depth-8 networks, per layer: the fraction of units labelled at each level after the within-image null,
and the within-class part probe, each for the trained networks and both controls (mean over the 3 seeds,
95% CI on the trained curve).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from report_rows import rows  # noqa: E402  (this folder: the scripts run as python docs/images/<name>.py)

PANELS = (("dissect_fraction_l1", "units labelled edges & strokes"),
          ("dissect_fraction_l2", "units labelled parts & shapes"),
          ("dissect_fraction_l3", "units labelled digits"),
          ("concept_probe_l2", "within-class part probe R²"))
CURVES = (("trained_mean", "trained", "-", "#1f5fa8"), ("control_mean", "random init", "--", "grey"),
          ("shuffled_labels_mean", "trained on shuffled labels", "-.", "black"))




def _value(text: str) -> float:
    return float(text) if text not in ("", None) else float("nan")


def main(sweep: Path, out: Path) -> None:
    fig = Figure(figsize=(15, 3.6), layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    for ax, (metric, title) in zip(axes, PANELS):
        r = [v for v in rows(sweep, metric) if v["trained_mean"] != ""]
        x = [float(v["position"]) for v in r]
        for column, label, style, colour in CURVES:
            y = [_value(v[column]) for v in r]
            if column == "trained_mean":
                ax.errorbar(x, y, yerr=[_value(v["trained_ci95"]) for v in r], fmt="o" + style, ms=4, capsize=2,
                            color=colour, label=label)
            else:
                ax.plot(x, y, style, color=colour, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("relative layer position (depth-8 CNN)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("MNIST, depth-8 CNNs, 3 seeds: labels after the within-image null, and the map-free part probe",
                 fontsize=11)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).with_name("finding.png"))
