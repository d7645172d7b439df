"""Mean and 95% confidence interval over seeds (Student's t)."""

from __future__ import annotations

import math

from scipy import stats


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% CI); the half-width is nan with fewer than 2 values."""
    values = [v for v in values if v is not None and not math.isnan(v)]
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
        vals = [v for v in column if v is not None and not math.isnan(v)]
        out.append(sum(vals) / len(vals) if vals else math.nan)
    return out
