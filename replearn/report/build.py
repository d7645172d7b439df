"""``compare_depth``: aggregate a sweep into depth_report/ (figures, summary.csv, runs.csv, summary.md, index.html)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from omegaconf import DictConfig

from replearn.errors import ReplearnError
from replearn.progress import progress
from replearn.report.claims import sweep_claims
from replearn.report.collect import RunRecord, as_row, collect_runs, resolve_sweep_dir
from replearn.report.figures import (
    LINES,
    dissection_figures,
    level2_figure,
    profiles_panel,
    save,
    within_cka,
)
from replearn.report.layers import LAYER_COLUMNS, METRIC_BY_KEY, analysed_cells, layer_rows
from replearn.report.page import write_report
from replearn.report.plots import grid_figure, plot_accuracy_vs_depth, plot_cka_heatmap, plot_curves_by_depth
from replearn.report.stats import mean_ci95
from replearn.runs.atomic import atomic_write
from replearn.runs.layout import DEPTH_REPORT

DECODABILITY, ARCHITECTURE = "Class decodability", "Architecture-dominated measures"
# (metric key, y label, log scale) of the architecture-dominated figure.
ARCHITECTURE_ROWS = [
    # Two-line labels: one line of this length is cut off at the figure's height.
    ("erf_area", "ERF: fraction of pixels\nwith 90% of |∂unit/∂input|", False),
    ("actmax_spectral_centroid", "act-max spectral centroid\n(cycles/pixel)", False),
    ("participation_ratio", "effective dimensionality\n(participation ratio)", True),
    ("cka_input", "linear CKA with the input pixels", False),
]

def _by_variant(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups = defaultdict(list)
    for r in records:
        groups[r.variant].append(r)
    return dict(sorted(groups.items()))


def accuracy_table(records: list[RunRecord]) -> list[dict]:
    """Per (variant, depth): mean ± CI over ok seeds and the count of each status."""
    cells = defaultdict(list)
    for r in records:
        cells[(r.variant, r.depth)].append(r)
    table = []
    for (variant, depth), runs in sorted(cells.items()):
        mean, ci = mean_ci95([r.test_acc for r in runs if r.test_acc is not None])
        counts = {s: sum(r.status == s for r in runs) for s in ("ok", "diverged", "failed", "missing")}
        table.append({"variant": variant, "depth": depth, "mean": mean, "ci95": ci, **counts, "runs": len(runs)})
    return table


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)


def compare_depth(cfg: DictConfig, output_dir: str | Path | None = None) -> Path:
    """Write the depth report of ``cfg.sweep``; returns the path of its index.html."""
    sweep_dir = resolve_sweep_dir(cfg.sweep, cfg.root)
    records = collect_runs(sweep_dir)
    out = Path(output_dir) if output_dir else sweep_dir / DEPTH_REPORT
    out.mkdir(parents=True, exist_ok=True)
    variants = _by_variant(records)
    cells = analysed_cells(records)
    cells_of = {v: [c for c in cells if c.variant == v] for v in variants}
    figures: list[tuple[str, str, str]] = []  # (section, file, caption)

    run_rows = [as_row(r) for r in records]
    _write_csv(out / "runs.csv", run_rows, list(run_rows[0]))
    rows = layer_rows(cells)
    _write_csv(out / "summary.csv", rows, LAYER_COLUMNS)
    claims = sweep_claims(cells, rows)
    table = accuracy_table(records)

    steps = progress(total=7, desc="depth report", enabled=cfg.progress)
    series = {v: {row["depth"]: (row["mean"], row["ci95"]) for row in table if row["variant"] == v and row["ok"]}
              for v in variants}
    figures.append(("Test accuracy", save(plot_accuracy_vs_depth(series), out / "accuracy_vs_depth.png"),
                    "Test accuracy vs depth per variant; error bars are 95% t-intervals over seeds. "
                    "Diverged, failed and missing runs are listed in the table, not averaged in."))
    steps.update()

    fig, axes = grid_figure(1, len(variants))
    for ax, (variant, runs) in zip(axes[0], variants.items()):
        seed0 = min((r.seed for r in runs), default=0)
        curves = {r.depth: [m["val_acc"] for m in r.metrics] for r in runs if r.seed == seed0 and r.metrics}
        plot_curves_by_depth(curves, title=f"{variant} (seed {seed0})", ax=ax)
    figures.append(("Training", save(fig, out / "curves_by_depth.png"), "Validation accuracy per epoch for each depth."))
    steps.update()

    fig, axes = grid_figure(2, len(variants))
    for col, variant in enumerate(variants):
        profiles_panel(axes[0, col], cells_of[variant], "probe_eval_acc", "linear-probe accuracy (held-out)", variant,
                       floor="probe_shuffled_eval_acc")
        profiles_panel(axes[1, col], cells_of[variant], "class_selectivity", "class selectivity (mean over units)",
                       variant)
    figures.append((DECODABILITY, save(fig, out / "probe_vs_position.png"),
                    "Top: linear-probe accuracy of every layer (input pixels at 0, logits at 1), averaged over seeds; "
                    f"{LINES}; dotted: the trained network's shuffled-label floor. Bottom: class selectivity."))
    steps.update()

    for key, label, log, name, caption in (
        ("grad_norm", "gradient norm of the block's weights", True, "grad_norms.png",
         f"Per-layer weight-gradient norm at the end of training ({LINES}; random init: at initialization)."),
        ("dead_fraction", "fraction of dead ReLU units", False, "dead_units.png",
         f"Units never positive on the analysed test images ({LINES})."),
    ):
        fig, axes = grid_figure(1, len(variants))
        for ax, variant in zip(axes[0], variants):
            profiles_panel(ax, cells_of[variant], key, label, variant, log=log)
        figures.append(("Trainability", save(fig, out / name), caption))
    steps.update()

    fig, axes = grid_figure(len(ARCHITECTURE_ROWS), len(variants))
    for row, (key, label, log) in enumerate(ARCHITECTURE_ROWS):
        for col, variant in enumerate(variants):
            profiles_panel(axes[row, col], cells_of[variant], METRIC_BY_KEY[key], label, variant, log=log)
    figures.append((ARCHITECTURE, save(fig, out / "complexity.png"),
                    f"Architecture-dominated measures per layer vs relative position ({LINES}): effective receptive "
                    "field, spectral centroid of activation-maximization images, participation ratio, CKA with the "
                    "input pixels. Where the control lines follow the solid one, the architecture, not training, sets "
                    "the value."))
    steps.update()

    figures.extend(level2_figure(cells_of, out))
    figures.extend(dissection_figures(cells_of, out))
    figures.extend(within_cka(cells_of, out))
    steps.update()
    figures.extend(_cross_depth_cka(variants, out, cfg))
    steps.update()
    steps.close()

    index = write_report(out, sweep_dir, table, records, claims, rows, figures)
    excluded = ", ".join(f"{sum(r.status == s for r in records)} {s}" for s in ("diverged", "failed", "missing")
                         if any(r.status == s for r in records))
    print(f"depth report of {len(records)} runs ({sum(r.status == 'ok' for r in records)} ok"
          + (f"; not averaged in: {excluded}, listed with their reasons" if excluded else "") + f") -> {index}")
    return index


def _cross_depth_cka(variants: dict[str, list[RunRecord]], out: Path, cfg: DictConfig) -> list[tuple[str, str, str]]:
    """CKA between the layers of the shallowest and the deepest trained model of each variant."""
    # lazy: torch and model loading (~2 s) only when cross-depth CKA is asked for (cross_cka_images > 0)
    import torch

    from replearn.analysis.cka import cross_model_cka  # lazy: as above
    from replearn.analysis.features import extract_features  # lazy: as above
    from replearn.runs.load import load_run  # lazy: as above

    pairs = []
    for variant, runs in variants.items():
        ok = sorted((r for r in runs if r.status == "ok"), key=lambda r: (r.seed, r.depth))
        if not ok:
            continue
        seed = ok[0].seed
        same_seed = [r for r in ok if r.seed == seed]
        shallow, deep = same_seed[0], same_seed[-1]
        if shallow.depth != deep.depth:
            pairs.append((variant, shallow, deep))
    if not pairs or cfg.cross_cka_images < 2:
        return []
    fig, axes = grid_figure(1, len(pairs), width=4.4, height=4.0)
    splits = None
    for ax, (variant, shallow, deep) in zip(axes[0], pairs):
        try:
            run_a, run_b = load_run(shallow.path), load_run(deep.path)
        except ReplearnError as exc:  # an unreadable checkpoint costs this panel, not the report
            ax.set_title(f"{variant}: not drawn ({str(exc)[:80]})", fontsize=7)
            ax.axis("off")
            continue
        splits = splits or run_a.splits()
        images = splits.test_x[: cfg.cross_cka_images]
        feats_a = extract_features(run_a.model, images, splits.normalize)
        feats_b = extract_features(run_b.model, images, splits.normalize)
        matrix = cross_model_cka(feats_b, feats_a, dtype=torch.float32)
        plot_cka_heatmap(matrix, list(feats_b), list(feats_a),
                         title=f"{variant}: depth {deep.depth} (rows) vs depth {shallow.depth} (cols)", ax=ax)
    return [("Representation similarity", save(fig, out / "cka_cross_depth.png"),
             f"Linear CKA between layers of the shallowest and the deepest model of each variant "
             f"(same seed, first {cfg.cross_cka_images} test images).")]
