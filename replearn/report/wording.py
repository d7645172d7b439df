"""How the depth report words its numbers: the Claim record, intervals, directions and cell counts."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from replearn.report.layers import INPUT
from replearn.report.stats import Interval

# What each comparison of the trained network is called in a sentence.
AGAINST = {"control": "random-init control", "shuffled_labels": "shuffled-label network",
           "floor": "shuffled-label floor"}


@dataclass
class Claim:
    """One computed sentence and the numbers behind it."""

    variant: str
    topic: str  # a metric key, "dissection_order", or "verdict_*"
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


def upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def format_number(x: float, signed: bool = False) -> str:
    """``x`` to three significant digits, 'n/a' for None/nan."""
    return _num(x, signed, _decimals(x))


def format_interval(iv: Interval | None, signed: bool = True) -> str:
    """'mean [low, high]' (95% CI over seeds), the single seed's value, or 'n/a'."""
    if iv is None:
        return "n/a"
    d = _decimals(iv.mean, iv.low, iv.high)
    if iv.n < 2 or math.isnan(iv.low):
        return f"{_num(iv.mean, signed, d)} (one seed, no CI)" if iv.n == 1 else "n/a"
    return f"{_num(iv.mean, signed, d)} [{_num(iv.low, signed, d)}, {_num(iv.high, signed, d)}]"


def format_p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


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


def cell_counts(rows: list[dict], name: str = "control") -> tuple[Counter, float]:
    """Holm-tested verdicts over the depth × layer cells (input pixels excluded: the same image in every network)
    and the median minimum detectable difference of the cells where no difference was detected."""
    tested = [r for r in rows if r["layer"] != INPUT and r.get(f"holm_vs_{name}") not in (None, "", "no data")]
    mdds = [r[f"mdd_vs_{name}"] for r in tested
            if r[f"holm_vs_{name}"] == "not detected" and r.get(f"mdd_vs_{name}") is not None]
    return Counter(r[f"holm_vs_{name}"] for r in tested), statistics.median(mdds) if mdds else math.nan


def counts_text(counts: Counter, name: str, mdd: float = math.nan) -> str:
    """'trained above the X in a of n cells, below in b, not detected in c (could have detected ≥ d) ...'."""
    what, total = AGAINST.get(name, name), sum(counts.values())
    if not total:
        return f"no depth × layer cell to compare with the {what}"
    text = f"trained above the {what} in {counts['above 0']} of {total} depth × layer cells, below in {counts['below 0']}"
    if counts["not detected"]:
        text += f", not detected in {counts['not detected']}"
        if not math.isnan(mdd):
            text += f" (could have detected ≥ {format_number(mdd)}; median over those cells)"
    if counts["zero"]:
        text += f", identical in {counts['zero']}"
    if counts["no CI"]:
        text += f", untested (one seed) in {counts['no CI']}"
    return text + " — paired t-tests, Holm-adjusted across the cells"
