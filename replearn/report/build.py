"""``compare_depth``: aggregate a sweep into depth_report/ (figures, summary.csv, runs.csv, summary.md, index.html)."""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from replearn.errors import ReplearnError
from replearn.progress import progress
from replearn.report.claims import sweep_claims
from replearn.report.collect import RunRecord, as_row, collect_runs, resolve_sweep_dir
from replearn.report.layers import METRIC_BY_KEY, Cell, Metric, analysed_cells, layer_rows
from replearn.report.page import write_report
from replearn.report.plots import (
    grid_figure,
    plot_accuracy_vs_depth,
    plot_cka_heatmap,
    plot_curves_by_depth,
    plot_layer_profiles,
    plot_level_fractions,
)
from replearn.report.stats import mean_ci95, nanmean
from replearn.runs.atomic import atomic_write
from replearn.runs.layout import DEPTH_REPORT

DECODABILITY, DISSECTION, ARCHITECTURE = ("Class decodability", "Dissection: what the units detect",
                                          "Architecture-dominated measures")
# (metric key, y label, log scale) of the architecture-dominated figure.
ARCHITECTURE_ROWS = [
    # Two-line labels: one line of this length is cut off at the figure's height.
    ("erf_area", "ERF: fraction of pixels\nwith 90% of |∂unit/∂input|", False),
    ("actmax_spectral_centroid", "act-max spectral centroid\n(cycles/pixel)", False),
    ("participation_ratio", "effective dimensionality\n(participation ratio)", True),
    ("cka_input", "linear CKA with the input pixels", False),
]
LAYER_COLUMNS = ["variant", "depth", "layer", "layer_index", "position", "metric", "n_seeds", "trained_mean",
                 "trained_ci95", "control_mean", "control_ci95", "diff_mean", "diff_low", "diff_high", "diff_pairs",
                 "trained_vs_control", "floor_mean", "floor_ci95", "floor_sd", "control_floor_mean", "trained_vs_floor"]


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


def _profile(cells: list[Cell], block: str, metric: Metric | str) -> dict[int, tuple[list[float], list[float]]]:
    """Per depth: (relative positions, per-layer values averaged over seeds)."""
    out = {}
    for cell in cells:
        series = cell.series(metric, block)
        if series:
            out[cell.depth] = (cell.position, nanmean(list(series.values())))
    return out


def _save(fig, path: Path) -> str:
    fig.savefig(path)
    return path.name


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
    figures.append(("Test accuracy", _save(plot_accuracy_vs_depth(series), out / "accuracy_vs_depth.png"),
                    "Test accuracy vs depth per variant; error bars are 95% t-intervals over seeds. "
                    "Diverged, failed and missing runs are listed in the table, not averaged in."))
    steps.update()

    fig, axes = grid_figure(1, len(variants))
    for ax, (variant, runs) in zip(axes[0], variants.items()):
        seed0 = min((r.seed for r in runs), default=0)
        curves = {r.depth: [m["val_acc"] for m in r.metrics] for r in runs if r.seed == seed0 and r.metrics}
        plot_curves_by_depth(curves, title=f"{variant} (seed {seed0})", ax=ax)
    figures.append(("Training", _save(fig, out / "curves_by_depth.png"), "Validation accuracy per epoch for each depth."))
    steps.update()

    fig, axes = grid_figure(2, len(variants))
    for col, variant in enumerate(variants):
        mine = cells_of[variant]
        plot_layer_profiles(_profile(mine, "trained", "probe_eval_acc"), _profile(mine, "random_init", "probe_eval_acc"),
                            ylabel="linear-probe accuracy (held-out)", title=variant, ax=axes[0, col],
                            floors=_profile(mine, "trained", "probe_shuffled_eval_acc"))
        plot_layer_profiles(_profile(mine, "trained", "class_selectivity"),
                            _profile(mine, "random_init", "class_selectivity"),
                            ylabel="class selectivity (mean over units)", title=variant, ax=axes[1, col])
    figures.append((DECODABILITY, _save(fig, out / "probe_vs_position.png"),
                    "Top: linear-probe accuracy of every layer (input pixels at 0, logits at 1), averaged over seeds; "
                    "dashed: the same architecture at random init; dotted: the trained network's shuffled-label "
                    "floor. Bottom: class selectivity, trained (solid) and random init (dashed)."))
    steps.update()

    for key, label, log, name, caption in (
        ("grad_norm", "gradient norm of the block's weights", True, "grad_norms.png",
         "Per-layer weight-gradient norm at the end of training (solid) and at initialization (dashed, "
         "the random-init network of the same seed)."),
        ("dead_fraction", "fraction of dead ReLU units", False, "dead_units.png",
         "Units never positive on the analysed test images; dashed: random init."),
    ):
        fig, axes = grid_figure(1, len(variants))
        for ax, variant in zip(axes[0], variants):
            plot_layer_profiles(_profile(cells_of[variant], "trained", key), _profile(cells_of[variant], "random_init", key),
                                ylabel=label, title=variant, log=log, ax=ax)
        figures.append(("Trainability", _save(fig, out / name), caption))
    steps.update()

    fig, axes = grid_figure(len(ARCHITECTURE_ROWS), len(variants))
    for row, (key, label, log) in enumerate(ARCHITECTURE_ROWS):
        metric = METRIC_BY_KEY[key]
        for col, variant in enumerate(variants):
            plot_layer_profiles(_profile(cells_of[variant], "trained", metric),
                                _profile(cells_of[variant], "random_init", metric),
                                ylabel=label, title=variant, log=log, ax=axes[row, col])
    figures.append((ARCHITECTURE, _save(fig, out / "complexity.png"),
                    "Architecture-dominated measures per layer vs relative position, trained (solid) and random-init "
                    "control (dashed): effective receptive field, spectral centroid of activation-maximization "
                    "images, participation ratio, CKA with the input pixels. Where the dashed line follows the "
                    "solid one, the architecture, not training, sets the value."))
    steps.update()

    figures.extend(_dissection_figures(cells_of, out))
    figures.extend(_within_cka(cells_of, out))
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


def _seed_mean(cell: Cell, key: str, block: str) -> list[float]:
    series = cell.series(key, block)
    return nanmean(list(series.values())) if series else [math.nan] * len(cell.layers)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _panel_grid(count: int, rows_per: int, width: float, height: float, max_cols: int = 4):
    """A figure with ``count`` panels of ``rows_per`` stacked axes each, wrapped ``max_cols`` panels per row."""
    cols = min(max_cols, count)
    grid_rows = math.ceil(count / cols)
    fig, axes = grid_figure(grid_rows * rows_per, cols, width=width, height=height)
    for k in range(count, grid_rows * cols):  # unused panels of the last row
        for r in range(rows_per):
            axes[(k // cols) * rows_per + r, k % cols].axis("off")
    return fig, [[axes[(k // cols) * rows_per + r, k % cols] for r in range(rows_per)] for k in range(count)]


LEVEL_KEYS = {"l1": "dissect_fraction_l1", "l2": "dissect_fraction_l2", "l3": "dissect_fraction_l3",
              "unlabelled": "dissect_fraction_unlabelled"}


def _dissection_figures(cells_of: dict[str, list[Cell]], out: Path) -> list[tuple[str, str, str]]:
    """Per variant: stacked level fractions per layer, trained vs control, one panel per depth."""
    figures = []
    for variant, cells in cells_of.items():
        cells = [c for c in cells if c.series(LEVEL_KEYS["l1"])]
        if not cells:
            continue
        fig, panels = _panel_grid(len(cells), 1, width=5.2, height=3.3, max_cols=3)
        for (ax,), cell in zip(panels, cells):
            shown = [i for i, name in enumerate(cell.layers) if name != "input"]
            means = {block: {k: [_seed_mean(cell, key, block)[i] for i in shown] for k, key in LEVEL_KEYS.items()}
                     for block in ("trained", "random_init")}
            control = means["random_init"] if cell.series(LEVEL_KEYS["l1"], "random_init") else None
            methods = next(iter(cell.series_raw("dissect_method").values()), [None] * len(cell.layers))
            labels = [cell.layers[i] + ("\n(grad×input)" if methods[i] == "grad_x_input" else "") for i in shown]
            plot_level_fractions(labels, means["trained"], control,
                                 title=f"{variant}, depth {cell.depth} ({len(cell.seeds)} seeds)", ax=ax, note=False,
                                 legend=cell is cells[0])
        figures.append((DISSECTION, _save(fig, out / f"dissection_levels_{_slug(variant)}.png"),
                        f"{variant}: fraction of each layer's units labelled with a level-1 (edges & strokes), level-2 "
                        "(parts & shapes) or level-3 (digit) concept, or unlabelled, averaged over seeds; per layer, "
                        "the left solid bar is the trained network, the right hatched bar its random-init control. Layers marked "
                        "(grad×input) have no spatial map (MLP units, logits): their units are dissected through the "
                        "gradient × input map, a proxy for where in the image the unit's evidence lies."))
    return figures


def _cka_grid(analysis: dict, block: str, size: int) -> np.ndarray | None:
    """The block's layer × layer CKA grid, or None if it is absent or not size × size numbers."""
    data = analysis.get(block)
    try:
        grid = np.asarray(data["cka"], dtype=float)
    except (TypeError, KeyError, ValueError):
        return None
    return grid if grid.shape == (size, size) else None


def _within_cka(cells_of: dict[str, list[Cell]], out: Path) -> list[tuple[str, str, str]]:
    """Per variant: within-model CKA averaged over seeds, per depth the trained grid above its random-init grid."""
    figures = []
    for variant, cells in cells_of.items():
        if not cells:
            continue
        fig, panels = _panel_grid(len(cells), 2, width=3.4, height=3.0)
        for axes, cell in zip(panels, cells):
            for ax, (block, name) in zip(axes, (("trained", "trained"), ("random_init", "random init"))):
                grids = [g for g in (_cka_grid(a, block, len(cell.layers)) for a in cell.analyses.values())
                         if g is not None]
                if not grids:
                    ax.set_title(f"depth {cell.depth} {name}: no CKA", fontsize=8)
                    ax.axis("off")
                    continue
                plot_cka_heatmap(np.nanmean(np.stack(grids), axis=0), cell.layers,
                                 title=f"{variant}, depth {cell.depth}, {name} ({len(grids)} seeds)", ax=ax)
        figures.append(("Representation similarity", _save(fig, out / f"cka_within_{_slug(variant)}.png"),
                        f"{variant}: linear CKA between every pair of layers within one model (input … logits), "
                        "averaged over seeds; for each depth the trained network is above and the same architecture "
                        "at random init below it, so structure that is there before training shows in both."))
    return figures


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
    return [("Representation similarity", _save(fig, out / "cka_cross_depth.png"),
             f"Linear CKA between layers of the shallowest and the deepest model of each variant "
             f"(same seed, first {cfg.cross_cka_images} test images).")]
