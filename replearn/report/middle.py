"""The middle-stage prediction of the claim: a level-2 (parts & shapes) measure peaks inside the network.

Per seed and per depth with at least 3 hidden layers, the interior contrast is
the maximum over the interior hidden layers (neither the first nor the last
hidden layer; input and logits are not hidden) minus the larger of the first
and last hidden layer; it is averaged over depths per seed. A peak inside
gives a positive contrast; a flat or monotone profile gives 0 or less. The
same contrast of the trained − control profile (layer by layer, paired by
seed) says whether the peak is learned, against random init and against the
shuffled-label network. Each measure is an intersection-union test (its p is
the largest of its three t-tests), Holm-adjusted across the level-2 measures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from replearn.report.layers import METRIC_BY_KEY, Cell
from replearn.report.stats import Interval, holm, interval, p_value
from replearn.report.wording import Claim, format_interval, format_p, upper

LEVEL2 = ("dissect_iou_vs_ceiling_l2", "concept_probe_l2", "dissect_fraction_l2")
CONTROLS = {"random_init": "random init", "shuffled_labels": "shuffled labels"}
NETWORK = {"random_init": "random-init", "shuffled_labels": "shuffled-label"}
ALPHA = 0.05


def interior_contrast(values: list[float | None], hidden: list[int]) -> float:
    """max over interior hidden layers − max(first hidden, last hidden); nan with < 3 hidden layers or a gap."""
    if len(hidden) < 3:
        return math.nan
    first, last = values[hidden[0]], values[hidden[-1]]
    inner = [values[i] for i in hidden[1:-1] if values[i] is not None]
    if first is None or last is None or not inner:
        return math.nan
    return max(inner) - max(first, last)


def seed_contrasts(cells: list[Cell], key: str, minus: str | None = None) -> dict[int, float]:
    """seed -> interior contrast of the trained profile (or of trained − ``minus`` block), averaged over depths."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    for cell in cells:
        hidden = cell.hidden()
        if len(hidden) < 3:
            continue
        other = cell.series(key, minus) if minus else {}
        for seed, values in cell.series(key, "trained").items():
            if minus:
                if seed not in other:
                    continue
                values = [None if a is None or b is None else a - b for a, b in zip(values, other[seed])]
            contrast = interior_contrast(values, hidden)
            if not math.isnan(contrast):
                per_seed[seed].append(contrast)
    return {seed: sum(v) / len(v) for seed, v in sorted(per_seed.items())}


def is_mlp(cells: list[Cell]) -> bool:
    """An MLP sweep: by the config's model name, else by every hidden layer being dissected through grad × input."""
    models = {c.model for c in cells if c.model}
    if models:
        return models == {"mlp"}
    methods = [m for c in cells for values in c.series_raw("dissect_method").values()
               for i, m in enumerate(values) if i in c.hidden()]
    return bool(methods) and all(m == "grad_x_input" for m in methods)


@dataclass
class MiddleTest:
    """One level-2 measure's contrasts (trained, and trained − each control) and its verdict."""

    key: str
    trained: Interval
    versus: dict[str, Interval | None] = field(default_factory=dict)
    p: float = math.nan  # the intersection-union p: the largest of the available t-tests
    p_holm: float = math.nan
    holds: bool | None = None
    status: str = ""


def _test(cells: list[Cell], key: str) -> MiddleTest | None:
    trained = seed_contrasts(cells, key)
    if not trained:
        return None
    test = MiddleTest(key, interval(list(trained.values())))
    ps = [p_value(list(trained.values()))]
    for block in CONTROLS:
        diff = seed_contrasts(cells, key, block)
        test.versus[block] = interval(list(diff.values())) if diff else None
        if diff:
            ps.append(p_value(list(diff.values())))
    test.p = max(ps) if not any(math.isnan(p) for p in ps) else math.nan
    return test


def _judge(test: MiddleTest) -> None:
    ivs = [test.trained, *(iv for iv in test.versus.values() if iv is not None)]
    if test.trained.n < 2:
        test.holds, test.status = None, "untested (fewer than two seeds)"
    elif any(iv.sign != "above 0" for iv in ivs):
        test.holds, test.status = False, "does not hold"
    elif test.versus.get("random_init") is None:
        test.holds, test.status = None, "untested against random init"
    elif test.versus.get("shuffled_labels") is None:
        test.holds, test.status = None, "untested against shuffled labels"
    elif not test.p_holm < ALPHA:
        test.holds, test.status = False, f"does not hold after Holm across the level-2 measures (p {format_p(test.p_holm)})"
    else:
        test.holds, test.status = True, "holds"


def _describe(test: MiddleTest) -> str:
    versus = "; ".join(f"trained − {name} {format_interval(test.versus.get(block))}"
                       if test.versus.get(block) is not None else f"no {NETWORK[block]} network in these runs"
                       for block, name in CONTROLS.items())
    return (f"{METRIC_BY_KEY[test.key].label}: {test.status} — interior contrast trained {format_interval(test.trained)}; "
            f"{versus}; Holm-adjusted p {format_p(test.p_holm)}")


def middle_verdict(variant: str, cells: list[Cell]) -> Claim | None:
    """The middle-stage verdict of one variant, on its primary level-2 measure, the others reported beside it."""
    tests = {key: t for key in LEVEL2 if (t := _test(cells, key)) is not None}
    if not tests and not any(cell.series(k) for cell in cells for k in LEVEL2):
        return None
    for test, p in zip(tests.values(), holm([t.p for t in tests.values()])):
        test.p_holm = p
        _judge(test)
    mlp = is_mlp(cells)
    primary = "concept_probe_l2" if mlp else "dissect_iou_vs_ceiling_l2"
    why = ("for MLPs, whose dissection is a gradient × input proxy" if mlp
           else "for CNNs, measured against what a perfect detector reaches at each map size")
    statement = ("the level-2 (parts & shapes) measure peaks inside the network: its largest value lies in an interior "
                 "hidden layer, beyond the first and the last hidden layer, and beyond both controls")
    main = tests.get(primary)
    if not tests:
        head, holds = "Untested (no depth has 3 or more hidden layers, so no layer is interior)", None
    elif main is None:
        head, holds = f"Untested (the primary measure, {METRIC_BY_KEY[primary].label}, is not in these runs)", None
    else:
        head, holds = upper(main.status), main.holds
    text = f"{head}: {statement}. Primary measure {why}: "
    text += _describe(main) if main else f"{METRIC_BY_KEY[primary].label}: n/a"
    others = [_describe(t) for k, t in tests.items() if k != primary]
    if others:
        text += ". Beside it: " + ". ".join(others)
    numbers = {"holds": holds, "primary": primary, "tests": tests}
    return Claim(variant, "verdict_middle_stage", "verdict", text + ".", numbers)
