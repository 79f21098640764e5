"""Chart geometry for the dashboard's inline SVG."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from labintake.web.charts import bar_chart, line_chart


def test_bars_are_proportional_and_keep_their_links() -> None:
    chart = bar_chart("t", [("a", 10, "/a"), ("b", 5, "/b"), ("c", 0, "/c")], width=400)
    widths = [bar.width for bar in chart.bars]
    assert widths[0] == 2 * widths[1]
    assert widths[2] == 0
    assert [bar.href for bar in chart.bars] == ["/a", "/b", "/c"]
    assert not chart.empty
    assert bar_chart("t", [("a", 0, "/a")]).empty


def test_line_chart_axis_is_round_and_covers_the_largest_value() -> None:
    hours = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(4)]
    chart = line_chart(
        "t",
        hours,
        {"received": [3, 21, 7, 0], "delivered": [1, 2, 3, 4]},
        {"received": ["/r"] * 4, "delivered": ["/d"] * 4},
    )
    assert chart.top_value == 25
    assert [value for _, value in chart.gridlines] == [0, 5, 10, 15, 20, 25]
    received = next(s for s in chart.series if s.name == "received")
    assert min(p.y for p in received.points) == received.points[1].y  # 21 is the highest
    assert [s.name for s in chart.legend] == ["received", "delivered"]
