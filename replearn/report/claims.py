"""Summary sentences computed from a sweep's numbers (never written with the hoped-for trend in mind).

Per variant and metric: the direction the trained value moves with relative
layer position (the least-squares slope over hidden layers, fitted per seed
with all depths pooled, then a 95% t-interval over seeds), the same slope for
the random-init control, and how many depth × layer cells have a trained −
control difference (paired by seed) whose 95% CI is above 0, below 0 or
includes 0. For the dissection, the level centroids (mean relative position
of the units labelled at each level) and in how many seeds edges < parts <
digits holds.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from replearn.report.layers import INPUT, METRICS, Cell, Metric
from replearn.report.stats import Interval, interval, paired_difference, slope

LEVELS = {1: "edges & strokes", 2: "parts & shapes", 3: "objects (digits)"}


@dataclass
class Claim:
    """One computed sentence and the numbers behind it."""

    variant: str
    topic: str  # a metric key, or "dissection_order"
    group: str
    text: str
    numbers: dict = field(default_factory=dict)


def _decimals(*values: float) -> int:
    """Decimals that give the largest of ``values`` three significant digits (at least 0)."""
    finite = [abs(v) for v in values if v is not None and not math.isnan(v) and v != 0]
    return max(0, 2 - math.floor(math.log10(max(finite)))) if finite else 3


def _num(x: float, signed: bool = True, decimals: int = 3) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def format_interval(iv: Interval, signed: bool = True) -> str:
    """'mean [low, high]' (95% CI over seeds), or the single seed's value."""
    d = _decimals(iv.mean, iv.low, iv.high)
    if iv.n < 2 or math.isnan(iv.low):
        return f"{_num(iv.mean, signed, d)} (one seed, no CI)" if iv.n == 1 else "n/a"
    return f"{_num(iv.mean, signed, d)} [{_num(iv.low, signed, d)}, {_num(iv.high, signed, d)}]"


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


def direction(iv: Interval) -> str:
    """'rises', 'falls', 'no clear direction' (CI includes 0) or 'flat' from a slope interval."""
    sign = iv.sign
    if sign == "above 0":
        return "rises"
    if sign == "below 0":
        return "falls"
    if sign == "includes 0":
        return "no clear direction"
    if sign == "zero":
        return "flat"
    if iv.n == 1 and not math.isnan(iv.mean):
        return ("rises" if iv.mean > 0 else "falls" if iv.mean < 0 else "flat") + " in the single seed"
    return "no slope (fewer than two layer positions)"


def control_counts(rows: list[dict], key: str = "trained_vs_control") -> Counter:
    """Counts of the per-cell verdicts over depth × layer cells (the input layer excluded: it is the same image)."""
    return Counter(row[key] for row in rows if row["layer"] != INPUT and row[key] not in ("", "no data"))


def _counts_text(counts: Counter, what: str) -> str:
    total = sum(counts.values())
    if not total:
        return f"no depth × layer cell to compare with the {what}"
    same = counts["includes 0"] + counts["zero"]
    text = (f"trained above the {what} in {counts['above 0']} of {total} depth × layer cells, below in "
            f"{counts['below 0']}, no difference in {same}")
    if counts["no CI"]:
        text += f", untested (one seed) in {counts['no CI']}"
    return text


def metric_claim(variant: str, metric: Metric, cells: list[Cell], rows: list[dict]) -> Claim | None:
    """The trend and control sentence of one metric for one variant (None without data)."""
    rows = [r for r in rows if r["variant"] == variant and r["metric"] == metric.key]
    if not rows:
        return None
    t_slopes, c_slopes = seed_slopes(cells, metric, "trained"), seed_slopes(cells, metric, "random_init")
    trained, control = interval(list(t_slopes.values())), interval(list(c_slopes.values()))
    # Is the trend learned? The trained − control slope, paired by seed.
    learned = paired_difference([t_slopes[s] for s in t_slopes], [c_slopes.get(s) for s in t_slopes])
    counts = control_counts(rows)
    text = (f"{_upper(metric.label)}: trained {direction(trained)} with layer position (slope {format_interval(trained)}, "
            f"{trained.n} seed(s)); control {direction(control)} (slope {format_interval(control)}; trained − control "
            f"slope {format_interval(learned)}). {_upper(_counts_text(counts, 'control'))}.")
    numbers = {"slope": trained, "control_slope": control, "slope_vs_control": learned, "vs_control": dict(counts)}
    if metric.floor_key:
        floor = control_counts(rows, "trained_vs_floor")
        if sum(floor.values()):
            text += f" {_upper(_counts_text(floor, 'shuffled-label floor'))}."
            numbers["vs_floor"] = dict(floor)
    if metric.group == "architecture":
        total, same = sum(counts.values()), counts["includes 0"] + counts["zero"]
        verdict = ("trained does not differ from the control in any cell" if total and same == total else
                   f"trained differs from the control in {total - same} of {total} cells")
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


def order_claim(variant: str, cells: list[Cell]) -> Claim | None:
    """Where units of each level sit, and in how many seeds edges < parts < digits holds; trained and control."""
    if not any(cell.series("dissect_fraction_l1", "trained") for cell in cells):
        return None
    parts, numbers = [], {}
    for block, name in (("trained", "trained"), ("random_init", "random-init control")):
        per_seed = level_centroids(cells, block)
        if not per_seed:
            continue
        ivs = {lv: interval([c[lv] for c in per_seed.values()]) for lv in LEVELS}
        holds = sum(_order_holds(c) for c in per_seed.values())
        numbers[block] = {"centroids": ivs, "order_holds": holds, "seeds": len(per_seed)}
        where = ", ".join(f"{LEVELS[lv]} {format_interval(ivs[lv], signed=False)}" if ivs[lv].n
                          else f"{LEVELS[lv]} none labelled" for lv in LEVELS)
        parts.append(f"{name}: {where}; edges < parts < digits in {holds} of {len(per_seed)} seed(s)")
    text = "Level centroids (mean relative position of the units labelled at each level) — " + ". ".join(parts) + "."
    trained = numbers.get("trained")
    if trained:
        if trained["order_holds"] < trained["seeds"]:
            text += (f" The trained networks do not show the edges < parts < digits order in every seed "
                     f"({trained['seeds'] - trained['order_holds']} of {trained['seeds']} do not).")
        control = numbers.get("random_init")
        if control and trained["order_holds"] and control["order_holds"] == control["seeds"]:
            text += " The control shows the same order in every seed, so the order alone is not evidence of learning."
    return Claim(variant, "dissection_order", "dissection", text, numbers)


# Predictions of the claim "edges & strokes first, then parts & shapes, then digits", each a sign of a slope.
PREDICTIONS = [
    ("dissect_fraction_l1", "below 0", "units labelled with edges & strokes become rarer with layer position"),
    ("dissect_fraction_l3", "above 0", "units labelled with digits become commoner with layer position"),
    ("probe_eval_acc", "above 0", "the digit class becomes more linearly decodable with layer position"),
]


def verdicts(variant: str, claims: list[Claim]) -> list[Claim]:
    """Each prediction of the claim checked against this variant's numbers: holds, does not hold, or untested."""
    mine = {c.topic: c for c in claims if c.variant == variant}
    out = []
    for key, expected, statement in PREDICTIONS:
        claim = mine.get(key)
        if claim is None:
            continue
        slope_iv, learned = claim.numbers["slope"], claim.numbers["slope_vs_control"]
        if slope_iv.sign in ("no CI", "no data"):
            text = f"Untested (fewer than two seeds): {statement} (slope {format_interval(slope_iv)})."
            holds = None
        elif slope_iv.sign != expected:
            text = (f"Does not hold: {statement} — the trained slope is {format_interval(slope_iv)}, "
                    f"{'its CI includes 0' if slope_iv.sign in ('includes 0', 'zero') else 'the opposite sign'}.")
            holds = False
        else:
            more = (f"and more than in the random-init control (trained − control slope {format_interval(learned)})"
                    if learned.sign == expected else
                    f"but not more than in the random-init control (trained − control slope {format_interval(learned)}, "
                    "so the architecture alone may produce it)")
            head = "Holds" if learned.sign == expected else "Holds, but not beyond the control"
            text = f"{head}: {statement} (trained slope {format_interval(slope_iv)}), {more}."
            holds = learned.sign == expected
        out.append(Claim(variant, f"verdict_{key}", "verdict", text, {"holds": holds}))
    order = mine.get("dissection_order")
    if order and "trained" in order.numbers:
        t, c = order.numbers["trained"], order.numbers.get("random_init")
        control = f"; the control shows it in {c['order_holds']} of {c['seeds']}" if c else ""
        if t["seeds"] < 2:
            holds, head = None, "Untested (fewer than two seeds)"
        else:
            holds = t["order_holds"] == t["seeds"] and not (c and c["order_holds"] == c["seeds"])
            head = "Holds" if holds else "Does not hold"
        out.append(Claim(variant, "verdict_order", "verdict",
                         f"{head}: edges & strokes < parts & shapes < digits in mean layer position, in every seed and "
                         f"not in the control — trained networks show this order in {t['order_holds']} of "
                         f"{t['seeds']} seed(s){control}.", {"holds": holds}))
    return out


def sweep_claims(cells: list[Cell], rows: list[dict], metrics: list[Metric] = METRICS) -> list[Claim]:
    """Every computed sentence, per variant: one per metric with data, plus the dissection order."""
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
        claims.extend(verdicts(variant, claims))
    return claims
