"""The per-layer table of a sweep: every metric, trained vs random-init control, over seeds.

One row per variant × depth × layer × metric (long format, loads with
``pandas.read_csv``): the trained mean and its 95% CI over seeds, the same
for the control, and the trained − control difference paired by seed with its
95% CI. Probe rows also carry the shuffled-label floor.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from replearn.report.collect import RunRecord
from replearn.report.stats import interval, paired_difference

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
    """A per-layer measure from analysis.json: a key of the trained/random_init blocks (or a function of one)."""

    key: str
    label: str
    group: str  # decodability | dissection | architecture
    floor_key: str | None = None  # shuffled-label chance floor stored next to it
    extract: Callable[[dict], list | None] | None = None

    def values(self, block: dict | None) -> list | None:
        if not isinstance(block, dict):
            return None
        return self.extract(block) if self.extract else block.get(self.key)


GROUPS = {
    "decodability": "Class decodability",
    "dissection": "Dissection: what the units detect",
    "architecture": "Architecture-dominated measures",
}

METRICS = [
    Metric("probe_eval_acc", "linear-probe accuracy (held-out)", "decodability", floor_key="probe_shuffled_eval_acc"),
    Metric("class_selectivity", "class selectivity (mean over units)", "decodability"),
    Metric("dissect_fraction_l1", "fraction of units labelled level 1 (edges & strokes)", "dissection"),
    Metric("dissect_fraction_l2", "fraction of units labelled level 2 (parts & shapes)", "dissection"),
    Metric("dissect_fraction_l3", "fraction of units labelled level 3 (objects: digits)", "dissection"),
    Metric("dissect_fraction_unlabelled", "fraction of units unlabelled", "dissection"),
    Metric("dissect_mean_best_iou_l1", "mean best IoU with a level-1 concept", "dissection"),
    Metric("dissect_mean_best_iou_l2", "mean best IoU with a level-2 concept", "dissection"),
    Metric("dissect_mean_best_iou_l3", "mean best IoU with a level-3 concept", "dissection"),
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
        cell = groups.setdefault((r.variant, r.depth), Cell(r.variant, r.depth, list(layers), list(position), {}))
        if list(layers) == cell.layers:  # a run of another architecture under the same name is not averaged in
            cell.analyses[r.seed] = a
    return [groups[k] for k in sorted(groups)]


def _column(series: dict[int, list], index: int, seeds: list[int]) -> list[float | None]:
    return [series[s][index] if s in series else None for s in seeds]


def _fmt(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 6)


def layer_rows(cells: list[Cell], metrics: list[Metric] = METRICS) -> list[dict]:
    """The long per-layer table: one dict per variant × depth × layer × metric where the metric has data."""
    rows = []
    for cell in cells:
        seeds = cell.seeds
        for metric in metrics:
            trained, control = cell.series(metric, "trained"), cell.series(metric, "random_init")
            if not trained:
                continue
            floor = cell.series(metric.floor_key, "trained") if metric.floor_key else {}
            floor_sd = cell.series(f"{metric.floor_key}_sd", "trained") if metric.floor_key else {}
            control_floor = cell.series(metric.floor_key, "random_init") if metric.floor_key else {}
            for i, layer in enumerate(cell.layers):
                t, c = _column(trained, i, seeds), _column(control, i, seeds)
                ti = interval(t)
                if ti.n == 0:
                    continue  # the measure does not apply to this layer
                ci, diff = interval(c), paired_difference(t, c)
                row = {
                    "variant": cell.variant, "depth": cell.depth, "layer": layer, "layer_index": i,
                    "position": round(cell.position[i], 6), "metric": metric.key, "n_seeds": ti.n,
                    "trained_mean": _fmt(ti.mean), "trained_ci95": _fmt(ti.half),
                    "control_mean": _fmt(ci.mean), "control_ci95": _fmt(ci.half),
                    "diff_mean": _fmt(diff.mean), "diff_low": _fmt(diff.low), "diff_high": _fmt(diff.high),
                    "diff_pairs": diff.n, "trained_vs_control": diff.sign,
                    "floor_mean": None, "floor_ci95": None, "floor_sd": None, "control_floor_mean": None,
                    "trained_vs_floor": "",
                }
                if floor:
                    f = _column(floor, i, seeds)
                    fi, above = interval(f), paired_difference(t, f)
                    row.update(floor_mean=_fmt(fi.mean), floor_ci95=_fmt(fi.half),
                               floor_sd=_fmt(interval(_column(floor_sd, i, seeds)).mean) if floor_sd else None,
                               control_floor_mean=_fmt(interval(_column(control_floor, i, seeds)).mean)
                               if control_floor else None,
                               trained_vs_floor=above.sign if fi.n else "")
                rows.append(row)
    return rows


def rows_by_metric(rows: list[dict]) -> dict[str, list[dict]]:
    """The long table split per metric, in METRICS order."""
    out = defaultdict(list)
    for row in rows:
        out[row["metric"]].append(row)
    order = [m.key for m in METRICS]
    return {k: out[k] for k in sorted(out, key=lambda k: order.index(k) if k in order else len(order))}
