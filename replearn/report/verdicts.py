"""The claim's predictions checked against a variant's numbers: holds, does not hold, or untested.

Every prediction must hold in the trained networks AND beyond both controls,
paired by seed: the random-init network (the architecture alone) and the
shuffled-label network (training without the digit labels). A prediction that
the shuffled-label network could not be checked against is never marked holds.
"""

from __future__ import annotations

from replearn.report.layers import BLOCKS
from replearn.report.middle import middle_verdict
from replearn.report.stats import Interval, interval, paired_difference
from replearn.report.wording import Claim, format_interval

# Predictions of "edges & strokes first, then parts & shapes, then digits" that are signs of a slope with layer
# position: (metric key, expected sign, statement, met by any trained classifier against random init).
PREDICTIONS = [
    ("dissect_fraction_l1", "below 0", "units labelled with edges & strokes become rarer with layer position", False),
    ("dissect_fraction_l3", "above 0", "units labelled with digits become commoner with layer position", True),
    ("probe_eval_acc", "above 0", "the digit class becomes more linearly decodable with layer position", True),
]
ANY_CLASSIFIER = (" Beating random init here is expected of any trained classifier, so only the comparison with the "
                  "shuffled-label network is informative.")
CONTROLS = {"control": "random init", "shuffled": "shuffled labels"}
NETWORK = {"random_init": "random-init", "shuffled_labels": "shuffled-label", "control": "random-init",
           "shuffled": "shuffled-label"}


def _controls_text(numbers: dict) -> str:
    return "; ".join(f"trained − {name} slope {format_interval(numbers.get(f'slope_vs_{key}'))}"
                     if numbers.get(f"slope_vs_{key}") is not None else f"no {NETWORK[key]} network in these runs"
                     for key, name in CONTROLS.items())


def slope_verdict(variant: str, key: str, expected: str, statement: str, any_classifier: bool, claim: Claim) -> Claim:
    """One slope prediction: the trained slope has the expected sign, and so has its difference from each control."""
    n = claim.numbers
    slope_iv = n["slope"]
    versus = {k: n.get(f"slope_vs_{k}") for k in CONTROLS}
    beaten = [name for k, name in CONTROLS.items() if versus[k] is not None and versus[k].sign != expected]
    if slope_iv.sign in ("no CI", "no data"):
        head, holds = "Untested (fewer than two seeds)", None
    elif slope_iv.sign != expected:
        why = "its CI includes 0" if slope_iv.sign in ("includes 0", "zero") else "the opposite sign"
        head, holds = f"Does not hold ({why})", False
    elif beaten:
        head, holds = f"Does not hold beyond {' or '.join(beaten)}", False
    elif versus["control"] is None:
        head, holds = "Untested against random init", None
    elif versus["shuffled"] is None:
        head, holds = "Untested against shuffled labels", None
    else:
        head, holds = "Holds", True
    text = (f"{head}: {statement}, beyond both controls — trained slope {format_interval(slope_iv)}; "
            f"{_controls_text(n)}.{ANY_CLASSIFIER if any_classifier else ''}")
    return Claim(variant, f"verdict_{key}", "verdict", text, {"holds": holds})


def _gap_intervals(gaps: dict[int, tuple[float, float]], minus: dict[int, tuple[float, float]] | None = None
                   ) -> tuple[Interval, Interval]:
    seeds = sorted(gaps)
    if minus is None:
        return interval([gaps[s][0] for s in seeds]), interval([gaps[s][1] for s in seeds])
    return tuple(paired_difference([gaps[s][k] for s in seeds], [minus[s][k] if s in minus else None for s in seeds])
                 for k in (0, 1))


def _gaps_text(ivs: tuple[Interval, Interval]) -> str:
    return f"parts − edges {format_interval(ivs[0])}, digits − parts {format_interval(ivs[1])}"


def order_verdict(variant: str, order: Claim) -> Claim | None:
    """The level order as a difference test: both centroid gaps above 0 in the trained networks and beyond each
    control (trained − control gaps, paired by seed); a control showing the order in some seeds is not 'absent'."""
    n = order.numbers
    trained = n.get("trained")
    if not trained:
        return None
    own = _gap_intervals(trained["gaps"])
    parts = [f"trained gaps {_gaps_text(own)} (order in {trained['order_holds']} of {trained['seeds']} seed(s))"]
    failed, missing = not all(iv.sign == "above 0" for iv in own), []
    for block in ("random_init", "shuffled_labels"):
        control = n.get(block)
        if control is None:
            missing.append(BLOCKS[block])
            parts.append(f"no {NETWORK[block]} network in these runs")
            continue
        diff = _gap_intervals(trained["gaps"], control["gaps"])
        failed |= not all(iv.sign == "above 0" for iv in diff)
        parts.append(f"trained − {BLOCKS[block]} {_gaps_text(diff)} (the {NETWORK[block]} network shows the order in "
                     f"{control['order_holds']} of {control['seeds']} seed(s))")
    if trained["seeds"] < 2:
        head, holds = "Untested (fewer than two seeds)", None
    elif failed:
        head, holds = "Does not hold", False
    elif missing:
        head, holds = f"Untested against {' and '.join(missing)}", None
    else:
        head, holds = "Holds", True
    text = (f"{head}: edges & strokes < parts & shapes < digits in mean layer position, with both gaps above 0 in the "
            f"trained networks and beyond both controls, paired by seed — {'; '.join(parts)}.")
    return Claim(variant, "verdict_order", "verdict", text, {"holds": holds, "gaps": own})


def verdicts(variant: str, claims: list[Claim], cells: list) -> list[Claim]:
    """Every prediction of the claim for one variant: the middle stage first (the core of the claim), the level
    order, then the slopes."""
    mine = {c.topic: c for c in claims if c.variant == variant}
    out = []
    middle = middle_verdict(variant, cells)
    if middle:
        out.append(middle)
    order = mine.get("dissection_order")
    if order:
        verdict = order_verdict(variant, order)
        if verdict:
            out.append(verdict)
    for key, expected, statement, any_classifier in PREDICTIONS:
        if key in mine:
            out.append(slope_verdict(variant, key, expected, statement, any_classifier, mine[key]))
    return out

