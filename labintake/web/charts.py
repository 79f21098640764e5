"""Chart geometry for server-rendered inline SVG: values in, shapes out (no drawing library).

Templates draw the shapes (`templates/partials/chart_*.html`); every bar and point carries
the link to the rows behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SERIES_COLOURS = {
    "received": "#5b8def",
    "verified": "#8c6bd1",
    "released": "#e08a1e",
    "delivered": "#1d9a5b",
    "held": "#b3541e",
}


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    href: str
    x: float
    y: float
    width: float
    height: float
    label_y: float


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    width: int
    height: int
    label_width: int
    bars: list[Bar]
    colour: str

    @property
    def empty(self) -> bool:
        return not self.bars or all(bar.value == 0 for bar in self.bars)


def bar_chart(
    title: str,
    items: list[tuple[str, int, str]],
    *,
    width: int = 460,
    bar_height: int = 20,
    gap: int = 8,
    label_width: int = 170,
    colour: str = "#1f5fbf",
) -> BarChart:
    """Horizontal bars: (label, value, href) each; the longest bar fills the plot width."""
    plot = width - label_width - 48
    top = max((value for _, value, _ in items), default=0) or 1
    bars = []
    for index, (label, value, href) in enumerate(items):
        y = index * (bar_height + gap) + 4
        bars.append(
            Bar(
                label=label,
                value=value,
                href=href,
                x=label_width,
                y=y,
                width=max(2.0, plot * value / top) if value else 0.0,
                height=bar_height,
                label_y=y + bar_height * 0.7,
            )
        )
    height = max(1, len(items)) * (bar_height + gap) + 8
    return BarChart(title, width, height, label_width, bars, colour)


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    value: int
    href: str
    when: datetime
    label: str = ""  # the moment as the point's tooltip names it


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    colour: str
    points: list[Point]

    @property
    def stroke(self) -> float:
        """Delivered is drawn wide and pale so that released shows on top of it."""
        return 5.0 if self.name == "delivered" else 2.2

    @property
    def opacity(self) -> float:
        return 0.45 if self.name == "delivered" else 1.0

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


LEGEND_ORDER = ("received", "verified", "held", "released", "delivered")


@dataclass(frozen=True, slots=True)
class LineChart:
    title: str
    width: int
    height: int
    left: int
    bottom: float
    top_value: int
    series: list[Series]
    ticks: list[Tick]
    gridlines: list[tuple[float, int]]

    @property
    def legend(self) -> list[Series]:
        return sorted(self.series, key=lambda s: LEGEND_ORDER.index(s.name))


def line_chart(
    title: str,
    hours: list[datetime],
    values: dict[str, list[int]],
    hrefs: dict[str, list[str]],
    *,
    width: int = 940,
    height: int = 230,
    tick_format: str = "%H:%M",
    point_format: str = "%H:00 UTC",
) -> LineChart:
    """One line per stage over the hours (or days: pass the formats); points link to the
    orders of that stage and moment."""
    left, right, top, bottom_margin = 40, 12, 12, 28
    plot_w = width - left - right
    plot_h = height - top - bottom_margin
    top_value = max((max(v, default=0) for v in values.values()), default=0)
    grid_step = _grid_step(top_value)
    scale_top = max(grid_step, -(-top_value // grid_step) * grid_step)
    n = max(1, len(hours) - 1)
    series = []
    for name, counts in values.items():
        points = [
            Point(
                x=left + plot_w * i / n,
                y=top + plot_h * (1 - count / scale_top),
                value=count,
                href=hrefs[name][i],
                when=hours[i],
                label=hours[i].strftime(point_format),
            )
            for i, count in enumerate(counts)
        ]
        series.append(Series(name, SERIES_COLOURS.get(name, "#555"), points))
    step = max(1, len(hours) // 8)
    ticks = [
        Tick(left + plot_w * i / n, hours[i].strftime(tick_format))
        for i in range(0, len(hours), step)
    ]
    gridlines = [
        (top + plot_h * (1 - value / scale_top), value)
        for value in range(0, scale_top + 1, grid_step)
    ]
    return LineChart(title, width, height, left, top + plot_h, scale_top, series, ticks, gridlines)


def _grid_step(value: int) -> int:
    """A round gridline step giving at most six lines up to `value`: 1, 2, 5, 10, 20, 50..."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if value <= step * 6:
                return step
        magnitude *= 10
