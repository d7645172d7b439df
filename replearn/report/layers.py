"""The per-layer table of a sweep: every metric, trained vs its controls, over seeds.

One row per variant × depth × layer × metric (long format, loads with
``pandas.read_csv``): the trained mean and its 95% CI over seeds, the same for
the random-init control and the shuffled-label network (when the run has one),
and each trained − control difference paired by seed with its 95% CI, paired
t-test p-value, Holm-adjusted p (across the depth × layer cells of the metric)
and minimum detectable difference. Probe rows also carry the shuffled-label floor.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from replearn.report.collect import RunRecord
from replearn.report.stats import holm, interval, min_detectable, p_value, paired_difference, standard_error, tested_sign

INPUT, LOGITS = "input", "logits"


def _cka_with_input(block: dict) -> list | None:
    """CKA of each layer with the input pixels: row 0 of the layer × layer CKA grid."""
    grid = block.get("cka")
    return list(grid[0]) if isinstance(grid, list) and grid and isinstance(grid[0], list) else None


def _number(value) -> float | None:
    """A finite float, or None for null, nan and anything that is not a number (a hand-edited file)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Metric:
    """A per-layer measure from analysis.json: a key of the per-network blocks (or a function of one)."""

    key: str
    label: str
    group: str  # a key of GROUPS
    floor_key: str | None = None  # shuffled-label chance floor stored next to it
    extract: Callable[[dict], list | None] | None = None

    def values(self, block: dict | None) -> list | None:
        if not isinstance(block, dict):
            return None
        return self.extract(block) if self.extract else block.get(self.key)


GROUPS = {
    "decodability": "Class decodability",
    "dissection": "Dissection: what the units detect",
    "parts": "Parts (map-free): concept probes",
    "architecture": "Architecture-dominated measures",
}
# The networks every per-layer number is given for: the trained one and its two controls (same seed).
BLOCKS = {"trained": "trained", "random_init": "random init", "shuffled_labels": "shuffled labels"}
LEVEL_NAMES = {1: "edges & strokes", 2: "parts & shapes", 3: "digits"}

METRICS = [
    Metric("probe_eval_acc", "linear-probe accuracy (held-out)", "decodability", floor_key="probe_shuffled_eval_acc"),
    Metric("class_selectivity", "class selectivity (mean over units)", "decodability"),
    *[Metric(f"dissect_fraction_l{k}", f"fraction of units labelled level {k} ({name}), after the within-image null",
             "dissection") for k, name in LEVEL_NAMES.items()],
    Metric("dissect_fraction_unlabelled", "fraction of units unlabelled", "dissection"),
    *[Metric(f"dissect_fraction_before_null_l{k}", f"fraction labelled level {k} before the null (threshold + ink only)",
             "dissection") for k in LEVEL_NAMES],
    *[Metric(f"dissect_iou_vs_ceiling_l{k}", f"best level-{k} IoU / that concept's ceiling (mean over units)",
             "dissection") for k in LEVEL_NAMES],
    *[Metric(f"dissect_mean_best_iou_l{k}", f"mean best IoU with a level-{k} concept", "dissection") for k in LEVEL_NAMES],
    Metric("concept_probe_l1", "within-class concept probe R² (level 1: edges & strokes)", "parts"),
    Metric("concept_probe_l2", "within-class concept probe R² (level 2: parts & shapes)", "parts"),
    Metric("erf_area", "effective receptive field (fraction of pixels)", "architecture"),
    Metric("actmax_spectral_centroid", "act-max spectral centroid (cycles/pixel)", "architecture"),
    Metric("participation_ratio", "participation ratio (effective dimensionality)", "architecture"),
    Metric("cka_input", "linear CKA with the input pixels", "architecture", extract=_cka_with_input),
]
METRIC_BY_KEY = {m.key: m for m in METRICS}


@dataclass
class Cell:
    """One architecture (variant, depth) of a sweep and its analysed seeds."""

    variant: str
    depth: int
    layers: list[str]
    position: list[float]
    analyses: dict[int, dict]  # seed -> analysis.json
    model: str = ""  # the config's model.name (mlp, cnn), "" when unknown

    @property
    def seeds(self) -> list[int]:
        return sorted(self.analyses)

    def series(self, metric: Metric | str, block: str = "trained") -> dict[int, list]:
        """seed -> per-layer values (None where missing) of ``metric`` (a Metric or a key of the block)."""
        out = {}
        for seed, analysis in self.analyses.items():
            data = analysis.get(block)
            if isinstance(metric, Metric):
                values = metric.values(data)
            else:
                values = data.get(metric) if isinstance(data, dict) else None
            if not isinstance(values, list) or len(values) != len(self.layers):
                continue
            out[seed] = [_number(v) for v in values]
        return out

    def series_raw(self, key: str, block: str = "trained") -> dict[int, list]:
        """seed -> the block's per-layer list for ``key`` as stored (strings kept), when it has one entry per layer."""
        out = {}
        for seed, analysis in self.analyses.items():
            data = analysis.get(block)
            values = data.get(key) if isinstance(data, dict) else None
            if isinstance(values, list) and len(values) == len(self.layers):
                out[seed] = values
        return out

    def hidden(self) -> list[int]:
        """Indices of the hidden layers (neither the input pixels nor the logits)."""
        return [i for i, name in enumerate(self.layers) if name not in (INPUT, LOGITS)]


def analysed_cells(records: list[RunRecord]) -> list[Cell]:
    """Group the ok runs that have a readable analysis.json by (variant, depth)."""
    groups: dict[tuple[str, int], Cell] = {}
    for r in records:
        a = r.analysis
        if r.status != "ok" or not isinstance(a, dict) or not isinstance(a.get("trained"), dict):
            continue
        layers, position = a.get("layers"), a.get("position")
        if (not isinstance(layers, list) or not isinstance(position, list) or not layers
                or len(layers) != len(position) or not all(isinstance(n, str) for n in layers)
                or any(_number(p) is None for p in position)):
            continue  # not an analysis.json this report can read; the run still counts in runs.csv
        cell = groups.setdefault((r.variant, r.depth), Cell(r.variant, r.depth, list(layers), list(position), {}, r.model))
        if list(layers) == cell.layers:  # a run of another architecture under the same name is not averaged in
            cell.analyses[r.seed] = a
    return [groups[k] for k in sorted(groups)]


def _column(series: dict[int, list], index: int, seeds: list[int]) -> list[float | None]:
    return [series[s][index] if s in series else None for s in seeds]


def _fmt(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 6)


def _sig(p: float) -> float | None:
    """A p-value to 4 significant digits (6 decimals would write 1e-8 as 0)."""
    return None if p is None or math.isnan(p) else float(f"{p:.4g}")


# Each comparison of the trained network: (name, the columns of the other side's mean / CI and of the paired difference).
# "control" is the random-init network (its columns keep their first names); "floor" is the probe's shuffled-label floor.
COMPARISONS = {
    "control": ("control_mean", "control_ci95", "diff"),
    "shuffled_labels": ("shuffled_labels_mean", "shuffled_labels_ci95", "diff_shuffled_labels"),
    "floor": ("floor_mean", "floor_ci95", "diff_floor"),
}
ALPHA = 0.05


def _comparison_columns(name: str) -> list[str]:
    mean_col, ci_col, diff_col = COMPARISONS[name]
    return [mean_col, ci_col, *(f"{diff_col}_{k}" for k in ("mean", "low", "high", "pairs")), f"trained_vs_{name}",
            f"p_vs_{name}", f"p_holm_vs_{name}", f"holm_vs_{name}", f"mdd_vs_{name}"]


# summary.csv's columns, in order.
LAYER_COLUMNS = ["variant", "depth", "layer", "layer_index", "position", "metric", "n_seeds", "trained_mean",
                 "trained_ci95", *_comparison_columns("control"), *_comparison_columns("shuffled_labels"),
                 *_comparison_columns("floor"), "floor_sd", "control_floor_mean"]


def _compare(row: dict, name: str, trained: list, other: list) -> None:
    """Fill one comparison's columns: the other side's mean ± CI, the paired difference, its raw sign and p-value."""
    mean_col, ci_col, diff_col = COMPARISONS[name]
    other_iv, diff = interval(other), paired_difference(trained, other)
    diffs = [t - o for t, o in zip(trained, other) if t is not None and o is not None]
    p = p_value(diffs)
    row.update({mean_col: _fmt(other_iv.mean), ci_col: _fmt(other_iv.half),
                f"{diff_col}_mean": _fmt(diff.mean), f"{diff_col}_low": _fmt(diff.low),
                f"{diff_col}_high": _fmt(diff.high), f"{diff_col}_pairs": diff.n,
                f"trained_vs_{name}": diff.sign if other_iv.n else "",
                f"p_vs_{name}": _sig(p), f"_p_{name}": p, f"_se_{name}": standard_error(diffs),
                f"_iv_{name}": diff})


def _empty(row: dict, name: str) -> None:
    mean_col, ci_col, diff_col = COMPARISONS[name]
    row.update({mean_col: None, ci_col: None, f"{diff_col}_mean": None, f"{diff_col}_low": None,
                f"{diff_col}_high": None, f"{diff_col}_pairs": 0, f"trained_vs_{name}": "", f"p_vs_{name}": None})


def adjust_cells(rows: list[dict]) -> None:
    """Holm-adjust each comparison's p-values across the depth × layer cells of one metric and variant, in place.

    Sets ``p_holm_vs_*``, ``holm_vs_*`` (above 0 / below 0 / not detected / zero / no CI) and ``mdd_vs_*``: the
    difference the cell's seeds detect with 80% power at the Bonferroni level ALPHA / m, which bounds Holm's own
    per-cell level from the strict side, so a true difference that large would have been found. The input pixels
    are the same image in every network and are not a cell of the family.
    """
    families: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        families[(row["variant"], row["metric"])].append(row)
    for family in families.values():
        cells = [r for r in family if r["layer"] != INPUT]
        for name in COMPARISONS:
            adjusted = holm([r.get(f"_p_{name}", math.nan) for r in cells])
            m = sum(not math.isnan(p) for p in adjusted)
            for r, p in zip(cells, adjusted):
                iv = r.get(f"_iv_{name}")
                r[f"p_holm_vs_{name}"] = _sig(p)
                r[f"holm_vs_{name}"] = tested_sign(iv, p, ALPHA) if iv is not None and r[f"trained_vs_{name}"] else ""
                se = r.get(f"_se_{name}", math.nan)
                r[f"mdd_vs_{name}"] = _fmt(min_detectable(se, iv.n, ALPHA / max(m, 1))) if iv is not None else None
        for r in family:
            for name in COMPARISONS:
                r.setdefault(f"p_holm_vs_{name}", None)
                r.setdefault(f"holm_vs_{name}", "")
                r.setdefault(f"mdd_vs_{name}", None)


def layer_rows(cells: list[Cell], metrics: list[Metric] = METRICS) -> list[dict]:
    """The long per-layer table: one dict per variant × depth × layer × metric where the metric has data.

    Each row compares the trained network with its random-init control, its shuffled-label twin (when the run has
    one) and, for probes, the shuffled-label floor; differences are paired by seed and Holm-adjusted per family.
    """
    rows = []
    for cell in cells:
        seeds = cell.seeds
        for metric in metrics:
            trained = cell.series(metric, "trained")
            if not trained:
                continue
            others = {"control": cell.series(metric, "random_init"),
                      "shuffled_labels": cell.series(metric, "shuffled_labels"),
                      "floor": cell.series(metric.floor_key, "trained") if metric.floor_key else {}}
            floor_sd = cell.series(f"{metric.floor_key}_sd", "trained") if metric.floor_key else {}
            control_floor = cell.series(metric.floor_key, "random_init") if metric.floor_key else {}
            for i, layer in enumerate(cell.layers):
                t = _column(trained, i, seeds)
                ti = interval(t)
                if ti.n == 0:
                    continue  # the measure does not apply to this layer
                row = {"variant": cell.variant, "depth": cell.depth, "layer": layer, "layer_index": i,
                       "position": round(cell.position[i], 6), "metric": metric.key, "n_seeds": ti.n,
                       "trained_mean": _fmt(ti.mean), "trained_ci95": _fmt(ti.half)}
                for name, series in others.items():
                    column = _column(series, i, seeds)
                    if series and interval(column).n:
                        _compare(row, name, t, column)
                    else:
                        _empty(row, name)
                row["floor_sd"] = _fmt(interval(_column(floor_sd, i, seeds)).mean) if floor_sd else None
                row["control_floor_mean"] = (_fmt(interval(_column(control_floor, i, seeds)).mean)
                                             if control_floor else None)
                rows.append(row)
    adjust_cells(rows)
    return rows


def rows_by_metric(rows: list[dict]) -> dict[str, list[dict]]:
    """The long table split per metric, in METRICS order."""
    out = defaultdict(list)
    for row in rows:
        out[row["metric"]].append(row)
    order = [m.key for m in METRICS]
    return {k: out[k] for k in sorted(out, key=lambda k: order.index(k) if k in order else len(order))}
