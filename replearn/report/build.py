"""``compare_depth``: aggregate a sweep into depth_report/ (figures, summary.csv, summary.md, index.html)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

from omegaconf import DictConfig
from tqdm.auto import tqdm

from replearn.report.collect import RunRecord, as_row, collect_runs, resolve_sweep_dir
from replearn.report.page import write_markdown, write_page
from replearn.report.plots import (
    grid_figure, plot_accuracy_vs_depth, plot_cka_heatmap, plot_curves_by_depth, plot_layer_profiles,
)
from replearn.report.stats import mean_ci95, nanmean

COMPLEXITY = [
    ("erf_area", "ERF: fraction of pixels holding 90% of |∂unit/∂input|", False),
    ("class_selectivity", "class selectivity (mean over units)", False),
    ("participation_ratio", "effective dimensionality (participation ratio)", True),
    ("actmax_spectral_centroid", "act-max spectral centroid (cycles/pixel)", False),
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


def _profile(records: list[RunRecord], block: str, key: str) -> dict[int, tuple[list[float], list[float]]]:
    """Per depth: (relative positions, per-layer values averaged over seeds) from analysis.json."""
    by_depth = defaultdict(list)
    positions = {}
    for r in records:
        data = (r.analysis or {}).get(block)
        if r.status != "ok" or not data or data.get(key) is None:
            continue
        by_depth[r.depth].append([math.nan if v is None else v for v in data[key]])
        positions[r.depth] = r.analysis["position"]
    return {d: (positions[d], nanmean(rows)) for d, rows in by_depth.items()}


def _save(fig, path: Path) -> str:
    fig.savefig(path)
    return path.name


def compare_depth(cfg: DictConfig, output_dir: str | Path | None = None) -> Path:
    """Write the depth report of ``cfg.sweep``; returns the path of its index.html."""
    sweep_dir = resolve_sweep_dir(cfg.sweep, cfg.root)
    records = collect_runs(sweep_dir)
    out = Path(output_dir) if output_dir else sweep_dir / "depth_report"
    out.mkdir(parents=True, exist_ok=True)
    variants = _by_variant(records)
    figures: list[tuple[str, str, str]] = []  # (section, file, caption)

    with open(out / "summary.csv", "w", newline="") as handle:
        rows = [as_row(r) for r in records]
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = accuracy_table(records)

    steps = tqdm(total=6, desc="depth report", disable=not cfg.progress)
    series = {v: {row["depth"]: (row["mean"], row["ci95"]) for row in table if row["variant"] == v and row["ok"]}
              for v in variants}
    figures.append(("Accuracy", _save(plot_accuracy_vs_depth(series), out / "accuracy_vs_depth.png"),
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

    sections = [
        ("Probes", "probe_eval_acc", "linear-probe accuracy (held-out)", False, "probe_vs_position.png",
         "Linear-probe accuracy of every layer (input pixels at 0, logits at 1), averaged over seeds; "
         "dashed: the same architecture at random init."),
        ("Trainability", "grad_norm", "gradient norm of the block's weights", True, "grad_norms.png",
         "Per-layer weight-gradient norm at the end of training (solid) and at initialization (dashed, "
         "the random-init network of the same seed)."),
        ("Trainability", "dead_fraction", "fraction of dead ReLU units", False, "dead_units.png",
         "Units never positive on the analysed test images; dashed: random init."),
    ]
    for section, key, label, log, name, caption in sections:
        fig, axes = grid_figure(1, len(variants))
        for ax, (variant, runs) in zip(axes[0], variants.items()):
            plot_layer_profiles(_profile(runs, "trained", key), _profile(runs, "random_init", key),
                                ylabel=label, title=variant, log=log, ax=ax)
        figures.append((section, _save(fig, out / name), caption))
    steps.update()

    fig, axes = grid_figure(len(COMPLEXITY), len(variants))
    for row, (key, label, log) in enumerate(COMPLEXITY):
        for col, (variant, runs) in enumerate(variants.items()):
            plot_layer_profiles(_profile(runs, "trained", key), _profile(runs, "random_init", key),
                                ylabel=label, title=variant, log=log, ax=axes[row, col])
    figures.append(("Pattern complexity", _save(fig, out / "complexity.png"),
                    "Complexity per layer vs relative position, trained (solid) and random-init control (dashed): "
                    "effective receptive field, class selectivity, participation ratio, spectral centroid of "
                    "activation-maximization images."))
    steps.update()

    figures.extend(_within_cka(variants, out))
    steps.update()
    figures.extend(_cross_depth_cka(variants, out, cfg))
    steps.update()
    steps.close()

    write_markdown(out / "summary.md", sweep_dir, table, records)
    index = write_page(out / "index.html", sweep_dir, table, records, figures)
    print(f"depth report of {len(records)} runs ({sum(r.status == 'ok' for r in records)} ok) -> {index}")
    return index


def _within_cka(variants: dict[str, list[RunRecord]], out: Path) -> list[tuple[str, str, str]]:
    """Within-model CKA grids: one row per variant, one column per depth (lowest seed)."""
    depths = sorted({r.depth for runs in variants.values() for r in runs if r.analysis})
    if not depths:
        return []
    fig, axes = grid_figure(len(variants), len(depths), width=3.2, height=2.9)
    for row, (variant, runs) in enumerate(variants.items()):
        for col, depth in enumerate(depths):
            ax = axes[row, col]
            candidates = sorted((r for r in runs if r.depth == depth and r.analysis and r.status == "ok"),
                                key=lambda r: r.seed)
            cka = candidates[0].analysis["trained"].get("cka") if candidates else None
            if cka is None:
                ax.set_title(f"{variant} depth {depth}: no analysis", fontsize=8)
                ax.axis("off")
                continue
            plot_cka_heatmap(cka, candidates[0].analysis["layers"], title=f"{variant}, depth {depth}", ax=ax)
    return [("Representation similarity", _save(fig, out / "cka_within.png"),
             "Linear CKA between every pair of layers within one model (input … logits)."),]


def _cross_depth_cka(variants: dict[str, list[RunRecord]], out: Path, cfg: DictConfig) -> list[tuple[str, str, str]]:
    """CKA between the layers of the shallowest and the deepest trained model of each variant."""
    import torch

    from replearn.analysis.cka import cross_model_cka
    from replearn.analysis.features import extract_features
    from replearn.runs import load_run

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
        run_a, run_b = load_run(shallow.path), load_run(deep.path)
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
