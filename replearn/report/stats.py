"""Means, 95% confidence intervals over seeds (Student's t), paired differences, slopes, t-tests, Holm, detectable sizes."""

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


def _cleaned(values) -> list[float]:
    """Finite values with round-off (|v| < 1e-12) set to 0, as ``interval`` does."""
    return [0.0 if abs(v) < 1e-12 else v for v in _finite(values)]


def p_value(values: list[float | None]) -> float:
    """Two-sided one-sample t-test of mean 0 (a paired t-test when ``values`` are paired differences).

    nan with fewer than 2 values or when every value is exactly 0 (nothing to test); 0 when the values are
    identical and non-zero (no spread: the t statistic is infinite).
    """
    values = _cleaned(values)
    if len(values) < 2 or all(v == 0 for v in values):
        return math.nan
    se = standard_error(values)
    if se == 0:
        return 0.0
    # The t-test by hand: scipy's warns on near-identical values, which a flat fake profile produces.
    return float(2 * stats.t.sf(abs(sum(values) / len(values)) / se, len(values) - 1))


def paired_p(a: list[float | None], b: list[float | None]) -> float:
    """Paired t-test p-value of a - b (pairs with a missing side dropped)."""
    return p_value([x - y for x, y in zip(a, b)
                    if x is not None and y is not None and not math.isnan(x) and not math.isnan(y)])


def standard_error(values: list[float | None]) -> float:
    """Standard error of the mean (sd / sqrt(n)); nan with fewer than 2 values."""
    values = _cleaned(values)
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, family-wise error control under any dependence); nan stays nan.

    The family is the non-nan entries: the i-th smallest of m is multiplied by (m - i), running maximum, capped at 1.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p))
    out = [math.nan] * len(pvalues)
    running, m = 0.0, len(tested)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def min_detectable(se: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided t-test at ``alpha`` finds with ``power``: (t_{1-a/2} + t_power) * SE."""
    if n < 2 or se is None or math.isnan(se):
        return math.nan
    return float(stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * se


def tested_sign(iv: Interval, p_adjusted: float, alpha: float = 0.05) -> str:
    """'above 0' / 'below 0' when the adjusted p is under ``alpha``, else 'not detected'; iv.sign where untestable."""
    if iv.sign in ("no data", "no CI", "zero"):
        return iv.sign
    if p_adjusted is None or math.isnan(p_adjusted) or p_adjusted >= alpha:
        return "not detected"
    return "above 0" if iv.mean > 0 else "below 0"
