"""The per-layer rows of one metric at one depth from a sweep's depth report, for the figure scripts here."""

from __future__ import annotations

import csv
from pathlib import Path


def rows(sweep: Path, metric: str, depth: str = "8") -> list[dict]:
    """Rows of ``<sweep>/depth_report/summary.csv`` for ``metric`` at ``depth``, in layer order (input left out)."""
    with open(sweep / "depth_report" / "summary.csv") as f:
        found = [r for r in csv.DictReader(f) if r["metric"] == metric and r["depth"] == depth and r["layer"] != "input"]
    return sorted(found, key=lambda r: float(r["position"]))
