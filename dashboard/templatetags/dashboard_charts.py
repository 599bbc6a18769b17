"""Server-rendered SVG charts: a stacked-bar chart and a bar/line chart, each taking labels
and series, drawn with the admin's CSS variables so that they follow its light and dark
themes. No JavaScript: every bar and point has a <title> that the browser shows on hover.

    {% load dashboard_charts %}
    {% stacked_bar_chart labels series chart_id="calls-per-day" unit="count" %}
    {% bar_line_chart labels series chart_id="placement-lag" unit="seconds" %}

A series is anything with ``name``, ``values`` (one number or None per label) and ``colour``;
for bar_line_chart also ``kind`` ("bar" or "line") and optionally ``lower``/``upper`` (an
error bar per label, e.g. a confidence interval). dashboard.charts.Series is one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django import template

register = template.Library()

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 44
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 16
Y_TICKS = 4


def nice_ceiling(value: float, *, ticks: int = 4) -> float:
    """The axis top for ``value``: ``ticks`` times a round step (1, 2, 2.5, 3, 4, 5, 6 or 8 x
    10^k), so that every grid line has a short label (60, 120, 180, 240; 1 for nothing)."""
    if not value or value <= 0 or not math.isfinite(value):
        return 1.0
    wanted = value / ticks
    exponent = math.floor(math.log10(wanted))
    for mantissa in (1, 2, 2.5, 3, 4, 5, 6, 8, 10):
        step = mantissa * 10**exponent
        if step * ticks >= value * (1 - 1e-9):
            return step * ticks
    return 10 ** (exponent + 1) * ticks


def _floor_for(unit: str, peak: float) -> float:
    # Counts are whole: at least one per grid step, never a 0.8-call grid line.
    return max(peak, Y_TICKS) if unit == "count" and peak else peak


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "percent":
        return f"{value:.1f}%" if value % 1 else f"{value:.0f}%"
    if unit == "seconds":
        return f"{value:.1f} s" if value < 100 else f"{value:,.0f} s"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def format_tick(value: float, unit: str) -> str:
    if unit == "count" and value >= 1000:
        return f"{value / 1_000_000:g}M" if value >= 1_000_000 else f"{value / 1000:g}k"
    if unit == "percent":
        return f"{value:g}%"
    if unit == "seconds":
        return f"{value:g} s"
    return f"{value:g}"


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    colour: str
    title: str


@dataclass
class Whisker:
    x: float
    y1: float
    y2: float
    title: str

    @property
    def cap_left(self) -> float:
        return self.x - 5

    @property
    def cap_right(self) -> float:
        return self.x + 5


def _frame(labels: Sequence[str], y_max: float, unit: str) -> dict:
    """Axes, grid lines and labels shared by both charts."""
    count = max(len(labels), 1)
    band = PLOT_W / count
    step = max(1, math.ceil(count / MAX_X_LABELS))
    x_labels = [
        {"x": LEFT + band * (i + 0.5), "text": label} for i, label in enumerate(labels) if i % step == 0
    ]
    y_ticks = [
        {"y": TOP + PLOT_H - PLOT_H * k / Y_TICKS, "text": format_tick(y_max * k / Y_TICKS, unit)}
        for k in range(Y_TICKS + 1)
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": LEFT + PLOT_W,
        "top": TOP,
        "bottom": TOP + PLOT_H,
        "middle_x": LEFT + PLOT_W / 2,
        "middle_y": TOP + PLOT_H / 2,
        "label_y": TOP + PLOT_H + 16,
        "tick_x": LEFT - 6,
        "x_labels": x_labels,
        "y_ticks": y_ticks,
        "band": band,
    }


def _y(value: float, y_max: float) -> float:
    return TOP + PLOT_H - PLOT_H * min(max(value, 0.0), y_max) / y_max


def _has_data(series: Sequence) -> bool:
    return any(value for s in series for value in s.values if value)


@register.inclusion_tag("dashboard/charts/chart.svg.html")
def stacked_bar_chart(
    labels: Sequence[str],
    series: Sequence,
    *,
    chart_id: str,
    unit: str = "count",
    title: str = "",
    empty_text: str = "No data yet",
) -> dict:
    """One bar per label, the series stacked bottom up in the order given."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    y_max = nice_ceiling(_floor_for(unit, max(totals, default=0)), ticks=Y_TICKS)
    frame = _frame(labels, y_max, unit)
    band = frame["band"]
    rects: list[Rect] = []
    for i, label in enumerate(labels):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            top = _y(base + value, y_max)
            rects.append(
                Rect(
                    x=LEFT + band * (i + 0.15),
                    y=top,
                    w=band * 0.7,
                    h=_y(base, y_max) - top,
                    colour=s.colour,
                    title=f"{label}: {s.name} {format_value(value, unit)} "
                    f"(total {format_value(totals[i], unit)})",
                )
            )
            base += value
    return {
        **frame,
        "chart_id": chart_id,
        "kind": "stacked",
        "title": title,
        "rects": rects,
        "lines": [],
        "whiskers": [],
        "legend": [{"name": s.name, "colour": s.colour} for s in series],
        "empty": not _has_data(series),
        "empty_text": empty_text,
    }


@register.inclusion_tag("dashboard/charts/chart.svg.html")
def bar_line_chart(
    labels: Sequence[str],
    series: Sequence,
    *,
    chart_id: str,
    unit: str = "count",
    title: str = "",
    y_max: float | None = None,
    empty_text: str = "No data yet",
) -> dict:
    """Bar series side by side in each label's band, line series drawn over them (a None
    value breaks the line); error bars where a series has ``lower``/``upper``."""
    peak = max(
        (
            value
            for s in series
            for value in [*s.values, *(getattr(s, "upper", None) or [])]
            if value is not None
        ),
        default=0,
    )
    top = y_max if y_max else nice_ceiling(_floor_for(unit, peak), ticks=Y_TICKS)
    frame = _frame(labels, top, unit)
    band = frame["band"]
    bars = [s for s in series if getattr(s, "kind", "bar") == "bar"]
    width = band * 0.7 / max(len(bars), 1)
    rects: list[Rect] = []
    whiskers: list[Whisker] = []
    for b, s in enumerate(bars):
        for i, value in enumerate(s.values):
            if value is None:
                continue
            x = LEFT + band * 0.15 + band * i + width * b
            y = _y(value, top)
            rects.append(
                Rect(
                    x=x,
                    y=y,
                    w=width,
                    h=TOP + PLOT_H - y,
                    colour=s.colour,
                    title=f"{labels[i]}: {s.name} {format_value(value, unit)}",
                )
            )
            lower, upper = getattr(s, "lower", None), getattr(s, "upper", None)
            if lower and upper and lower[i] is not None and upper[i] is not None:
                whiskers.append(
                    Whisker(
                        x=x + width / 2,
                        y1=_y(lower[i], top),
                        y2=_y(upper[i], top),
                        title=f"{labels[i]}: 95% interval {format_value(lower[i], unit)} "
                        f"to {format_value(upper[i], unit)}",
                    )
                )
    lines = []
    for s in series:
        if getattr(s, "kind", "bar") != "line":
            continue
        segments, points, dots = [], [], []
        for i, value in enumerate(s.values):
            if value is None:
                if points:
                    segments.append(" ".join(points))
                points = []
                continue
            x, y = LEFT + band * (i + 0.5), _y(value, top)
            points.append(f"{x:.1f},{y:.1f}")
            dots.append({"x": x, "y": y, "title": f"{labels[i]}: {s.name} {format_value(value, unit)}"})
        if points:
            segments.append(" ".join(points))
        lines.append({"colour": s.colour, "segments": segments, "dots": dots})
    return {
        **frame,
        "chart_id": chart_id,
        "kind": "bar-line",
        "title": title,
        "rects": rects,
        "lines": lines,
        "whiskers": whiskers,
        "legend": [{"name": s.name, "colour": s.colour} for s in series],
        "empty": not _has_data(series),
        "empty_text": empty_text,
    }
