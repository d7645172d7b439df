"""Summary sentences computed from a sweep's numbers (never written with the hoped-for trend in mind).

Per variant and metric: the direction the trained value moves with relative
layer position (the least-squares slope over hidden layers, fitted per seed
with all depths pooled, then a 95% t-interval over seeds), the same slope for
the random-init control and the shuffled-label network with the paired trained
− control slopes, and how many depth × layer cells differ from each control
(paired t-tests, Holm-adjusted). For the dissection, the level centroids (mean
relative position of the units labelled at each level), their gaps per seed,
and in how many seeds edges < parts < digits holds, in every network.
"""

from __future__ import annotations

import math
from collections import Counter

from replearn.report.layers import BLOCKS, METRICS, Cell, Metric
from replearn.report.stats import Interval, interval, paired_difference, slope
from replearn.report.verdicts import verdicts
from replearn.report.wording import Claim, cell_counts, counts_text, direction, format_interval, upper

LEVELS = {1: "edges & strokes", 2: "parts & shapes", 3: "objects (digits)"}
ADJECTIVE = {"random init": "random-init", "shuffled labels": "shuffled-label"}


def seed_slopes(cells: list[Cell], metric: Metric, block: str = "trained") -> dict[int, float]:
    """Per seed: slope of the metric vs relative position over hidden layers, all depths pooled."""
    points: dict[int, tuple[list, list]] = {}
    for cell in cells:
        for seed, values in cell.series(metric, block).items():
            xs, ys = points.setdefault(seed, ([], []))
            for i in cell.hidden():
                if values[i] is not None:
                    xs.append(cell.position[i])
                    ys.append(values[i])
    return {seed: slope(xs, ys) for seed, (xs, ys) in sorted(points.items())}


def _slope_text(name: str, iv: Interval | None, vs: Interval | None) -> str:
    if iv is None or iv.n == 0:
        return f"no {ADJECTIVE[name]} network in these runs"
    return (f"{name} {direction(iv)} (slope {format_interval(iv)}; trained − {name} slope {format_interval(vs)})")


def metric_claim(variant: str, metric: Metric, cells: list[Cell], rows: list[dict]) -> Claim | None:
    """The trend sentence of one metric for one variant, against both controls (None without data)."""
    rows = [r for r in rows if r["variant"] == variant and r["metric"] == metric.key]
    if not rows:
        return None
    slopes = {block: seed_slopes(cells, metric, block) for block in BLOCKS}
    t_slopes = slopes["trained"]
    trained = interval(list(t_slopes.values()))
    numbers = {"slope": trained}
    for block, key in (("random_init", "control"), ("shuffled_labels", "shuffled")):
        other = slopes[block]
        numbers[f"{key}_slope"] = interval(list(other.values())) if other else None
        # Is the trend learned? The trained − control slope, paired by seed.
        numbers[f"slope_vs_{key}"] = (paired_difference([t_slopes[s] for s in t_slopes], [other.get(s) for s in t_slopes])
                                      if other else None)
    text = (f"{upper(metric.label)}: trained {direction(trained)} with layer position (slope {format_interval(trained)}, "
            f"{trained.n} seed(s)); {_slope_text('random init', numbers['control_slope'], numbers['slope_vs_control'])}; "
            f"{_slope_text('shuffled labels', numbers['shuffled_slope'], numbers['slope_vs_shuffled'])}.")
    for name, key in (("control", "control"), ("shuffled_labels", "shuffled"), ("floor", "floor")):
        counts, mdd = cell_counts(rows, name)
        if sum(counts.values()) or name == "control":
            text += f" {upper(counts_text(counts, name, mdd))}."
            numbers[f"vs_{key}"], numbers[f"mdd_{key}"] = dict(counts), mdd
    if metric.group == "architecture":
        counts = Counter(numbers.get("vs_control", {}))
        total, detected = sum(counts.values()), counts["above 0"] + counts["below 0"]
        verdict = ("trained is identical to the control in every cell" if total and counts["zero"] == total else
                   "no cell differs detectably from the control" if total and not detected else
                   f"trained differs detectably from the control in {detected} of {total} cells")
        text += (f" Shown as context, not as evidence for the claim (the architecture largely sets this measure): "
                 f"{verdict}.")
    return Claim(variant, metric.key, metric.group, text, numbers)


def _unit_counts(analysis: dict, block: str, layers: list[str]) -> list[float]:
    """Units per layer from the dissection block (1 per layer when it is absent, so fractions weigh equally)."""
    dissection = analysis.get("dissection")
    per_layer = dissection.get(block) if isinstance(dissection, dict) else None
    per_layer = per_layer if isinstance(per_layer, dict) else {}
    counts = []
    for name in layers:
        # The dissection block names the logits by their module ("head").
        units = per_layer.get(name, per_layer.get("head")) if name == "logits" else per_layer.get(name)
        best = units.get("best_concept") if isinstance(units, dict) else None
        counts.append(float(len(best)) if isinstance(best, list) and best else 1.0)
    return counts


def level_centroids(cells: list[Cell], block: str = "trained") -> dict[int, dict[int, float]]:
    """seed -> {level: mean relative position of the units labelled at that level (hidden layers, depths pooled)}."""
    sums: dict[int, dict[int, list[float]]] = {}
    for cell in cells:
        fractions = {lv: cell.series(f"dissect_fraction_l{lv}", block) for lv in LEVELS}
        for seed, analysis in cell.analyses.items():
            if not any(seed in fractions[lv] for lv in LEVELS):
                continue  # this network was not dissected in this run (an older run without the block)
            units = _unit_counts(analysis, block, cell.layers)
            acc = sums.setdefault(seed, {lv: [0.0, 0.0] for lv in LEVELS})
            for lv in LEVELS:
                values = fractions[lv].get(seed)
                if values is None:
                    continue
                for i in cell.hidden():
                    if values[i] is not None:
                        weight = values[i] * units[i]
                        acc[lv][0] += weight * cell.position[i]
                        acc[lv][1] += weight
    return {seed: {lv: (s / w if w > 0 else math.nan) for lv, (s, w) in acc.items()} for seed, acc in sorted(sums.items())}


def _order_holds(c: dict[int, float]) -> bool:
    return all(not math.isnan(c[lv]) for lv in LEVELS) and c[1] < c[2] < c[3]


def level_gaps(per_seed: dict[int, dict[int, float]]) -> dict[int, tuple[float, float]]:
    """seed -> (parts − edges, digits − parts) centroid gaps; a level with no labelled unit has no place in the
    order, so the gaps it takes part in count as 0 (no order), not as missing."""
    def gap(c, lo, hi):
        return 0.0 if math.isnan(c[lo]) or math.isnan(c[hi]) else c[hi] - c[lo]
    return {seed: (gap(c, 1, 2), gap(c, 2, 3)) for seed, c in per_seed.items()}


def order_claim(variant: str, cells: list[Cell]) -> Claim | None:
    """Where units of each level sit, and in how many seeds edges < parts < digits holds, in every network."""
    if not any(cell.series("dissect_fraction_l1", "trained") for cell in cells):
        return None
    parts, numbers = [], {}
    for block, name in BLOCKS.items():
        per_seed = level_centroids(cells, block)
        if not per_seed:
            continue
        ivs = {lv: interval([c[lv] for c in per_seed.values()]) for lv in LEVELS}
        holds = sum(_order_holds(c) for c in per_seed.values())
        numbers[block] = {"centroids": ivs, "order_holds": holds, "seeds": len(per_seed), "gaps": level_gaps(per_seed)}
        where = ", ".join(f"{LEVELS[lv]} {format_interval(ivs[lv], signed=False)}" if ivs[lv].n
                          else f"{LEVELS[lv]} none labelled" for lv in LEVELS)
        parts.append(f"{name}: {where}; edges < parts < digits in {holds} of {len(per_seed)} seed(s)")
    text = "Level centroids (mean relative position of the units labelled at each level) — " + ". ".join(parts) + "."
    trained = numbers.get("trained")
    if trained:
        if trained["order_holds"] < trained["seeds"]:
            text += (f" The trained networks do not show the edges < parts < digits order in every seed "
                     f"({trained['seeds'] - trained['order_holds']} of {trained['seeds']} do not).")
        shown = [f"{BLOCKS[b]} in {numbers[b]['order_holds']} of {numbers[b]['seeds']} seed(s)"
                 for b in ("random_init", "shuffled_labels") if b in numbers and numbers[b]["order_holds"]]
        if trained["order_holds"] and shown:
            text += (f" A control shows the same order too ({'; '.join(shown)}), so the order alone is not evidence "
                     "of learning: the verdict compares the gaps, trained − control, paired by seed.")
    return Claim(variant, "dissection_order", "dissection", text, numbers)


def sweep_claims(cells: list[Cell], rows: list[dict], metrics: list[Metric] = METRICS) -> list[Claim]:
    """Every computed sentence, per variant: one per metric with data, the dissection order, then the verdicts."""
    claims = []
    for variant in sorted({c.variant for c in cells}):
        mine = [c for c in cells if c.variant == variant]
        for metric in metrics:
            claim = metric_claim(variant, metric, mine, rows)
            if claim:
                claims.append(claim)
        order = order_claim(variant, mine)
        if order:
            claims.append(order)
        claims.extend(verdicts(variant, claims, mine))
    return claims
