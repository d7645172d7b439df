"""Means, 95% confidence intervals over seeds (Student's t), paired differences and slopes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% CI); the half-width is nan with fewer than 2 values."""
    values = _finite(values)
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))


def nanmean(rows: list[list[float | None]]) -> list[float]:
    """Element-wise mean of equal-length lists, ignoring None/nan."""
    out = []
    for column in zip(*rows):
        vals = _finite(column)
        out.append(sum(vals) / len(vals) if vals else math.nan)
    return out


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95% t-interval [low, high] (nan bounds with fewer than 2 values)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    @property
    def sign(self) -> str:
        """'above 0', 'below 0', 'includes 0', 'zero' (every value exactly 0), 'no CI' (n < 2) or 'no data'."""
        if self.n == 0:
            return "no data"
        if self.n < 2 or math.isnan(self.low):
            return "no CI"  # one seed is untested, even when its value is exactly 0
        if self.mean == 0 and self.low == 0 and self.high == 0:
            return "zero"
        if self.low > 0:
            return "above 0"
        if self.high < 0:
            return "below 0"
        return "includes 0"


def interval(values: list[float]) -> Interval:
    """Mean and 95% t-interval of ``values`` (None/nan dropped)."""
    # Round-off (a slope of exactly flat data comes out near 1e-17) must not read as a direction.
    values = [0.0 if abs(v) < 1e-12 else v for v in _finite(values)]
    mean, half = mean_ci95(values)
    if values and all(v == 0 for v in values):
        return Interval(0.0, 0.0, 0.0, len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def paired_difference(a: list[float | None], b: list[float | None]) -> Interval:
    """Mean of a[i] - b[i] with its 95% CI (a paired t-interval); pairs with a missing side are dropped."""
    diffs = [x - y for x, y in zip(a, b)
             if x is not None and y is not None and not math.isnan(x) and not math.isnan(y)]
    return interval(diffs)


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y on x (nan pairs dropped; nan with fewer than 2 distinct x)."""
    pairs = [(a, b) for a, b in zip(x, y) if b is not None and not math.isnan(b)]
    if len({a for a, _ in pairs}) < 2:
        return math.nan
    return float(stats.linregress([a for a, _ in pairs], [b for _, b in pairs]).slope)
