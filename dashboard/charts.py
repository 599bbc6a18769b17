"""What a chart is, independent of how it is drawn: labels, series, and the same numbers as a
table (shown under the chart and served as CSV). Plus the one statistic the page needs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Mid-tone colours with white or dark text both readable, on the admin's light and dark
# themes (the calls admin's status badges use the same family).
PALETTE = ["#2563eb", "#15803d", "#b45309", "#7e22ce", "#b91c1c", "#0e7490", "#64748b", "#a16207"]


@dataclass
class Series:
    name: str
    values: list[float | None]
    colour: str
    kind: str = "bar"  # "bar" or "line" (bar_line_chart)
    lower: list[float | None] | None = None
    upper: list[float | None] | None = None


@dataclass
class Chart:
    slug: str  # its id in the page (chart-<slug>-svg, chart-<slug>-table) and /dashboard/<slug>.csv
    title: str
    help: str
    kind: str  # "stacked" or "bar-line"
    unit: str  # "count", "percent" or "seconds": axis ticks and hover text
    labels: list[str]
    series: list[Series]
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    y_max: float | None = None
    # Shown instead of the chart (and its table) when the chart does not apply yet.
    hidden_note: str = ""

    @property
    def empty(self) -> bool:
        return not any(value for s in self.series for value in s.values if value)


def wilson_interval(successes: int, trials: int, *, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default), as fractions.

    Unlike p ± z·sqrt(p(1-p)/n) it stays within [0, 1] and is sensible for small n and for
    rates near 0 or 1, which is where a new variant starts."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
