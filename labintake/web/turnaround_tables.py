"""The dashboard's tables for a range of days: turnaround by stage, the daily trend, holds by
office over time, coder productivity and work in progress. On the screen minutes read as
"45 min" or "3.2 h"; the CSV export gets bare numbers with the unit in the header."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time

from labintake.stats_coders import Productivity
from labintake.stats_turnaround import HELD, Figures, Period, TurnaroundReport
from labintake.web.charts import LineChart, line_chart
from labintake.web.dashboard_tables import Cell, Table, drill, minutes_cell, plain_number

# Offices listed on the page (all of them, per day, in the CSV `holds_office_daily`).
TOP_OFFICES = 15

# The order column each stage ends on, when there is one: its count opens those orders.
_REACHED = {
    "received_verified": "verified",
    "held_released": "released",
    "released_delivered": "delivered",
    "received_released": "released",
}


def _n(value: int, href: str | None = None) -> Cell:
    return Cell(str(value), href, numeric=True)


def _number(value: float) -> Cell:
    return Cell(plain_number(value), numeric=True)


def _range(period: Period) -> dict[str, str]:
    return {"received_from": period.first.isoformat(), "received_to": period.last.isoformat()}


def _day(day: date) -> dict[str, str]:
    return {"received_from": day.isoformat(), "received_to": day.isoformat()}


def _resolved(period: Period) -> dict[str, str]:
    return {"resolved_from": period.first.isoformat(), "resolved_to": period.last.isoformat()}


def _resolved_on(day: date) -> dict[str, str]:
    return {"resolved_from": day.isoformat(), "resolved_to": day.isoformat()}


def _figures(found: Figures) -> list[Cell]:
    return [minutes_cell(found.median_minutes), minutes_cell(found.p90_minutes)]


def turnaround_tables(found: TurnaroundReport, work: Productivity) -> dict[str, Table]:
    period = found.period
    span = f"{period.first.isoformat()} to {period.last.isoformat()}"
    tables = [
        Table(
            "stages",
            f"Turnaround by stage, orders received {span}",
            ["Stage", "Orders", "Ended", "Median", "90th percentile", "Not ended yet"],
            [
                [
                    Cell(stage.label),
                    Cell(stage.path),
                    _n(
                        stage.figures.count,
                        drill(**_range(period), path=stage.path, reached=_REACHED[stage.key])
                        if stage.key in _REACHED
                        else None,
                    ),
                    *_figures(stage.figures),
                    _n(stage.figures.open),
                ]
                for stage in found.stages
            ],
            ["stage", "orders", "count", "median_minutes", "p90_minutes", "not_ended"],
        ),
        Table(
            "daily",
            f"Daily trend, orders received {span} (UTC days)",
            [
                "Date",
                "Received",
                "Automatic",
                "Held",
                "Released",
                "Delivered",
                "Automatic: received → released, median",
                "Held: held → released, median",
                "Held: held → released, 90th percentile",
            ],
            [
                [
                    Cell(day.day.isoformat()),
                    _n(day.received, drill(**_day(day.day))),
                    _n(day.automatic, drill(**_day(day.day), path="automatic")),
                    _n(day.held, drill(**_day(day.day), path=HELD)),
                    _n(day.released, drill(**_day(day.day), reached="released")),
                    _n(day.delivered, drill(**_day(day.day), reached="delivered")),
                    minutes_cell(day.automatic_released.median_minutes),
                    *_figures(day.held_released),
                ]
                for day in found.days
            ],
            [
                "date",
                "received",
                "automatic",
                "held",
                "released",
                "delivered",
                "automatic_received_to_released_median_minutes",
                "held_to_released_median_minutes",
                "held_to_released_p90_minutes",
            ],
        ),
        _offices(found, span),
        Table(
            "holds_office_daily",
            f"Holds by ordering office over time, orders received {span}",
            ["Date", "Office", "Held orders"],
            [
                [
                    Cell(day.isoformat()),
                    Cell(office),
                    _n(n, drill(**_day(day), path=HELD, office=office)),
                ]
                for day, office, n in found.holds_by_office
            ],
            ["date", "office", "held_orders"],
        ),
        Table(
            "coders",
            f"Coders, {span}",
            [
                "Coder",
                "Resolved",
                "Resolved per day",
                "First touch → resolution, median",
                "90th percentile",
                "Claimed now",
            ],
            [
                [
                    Cell(total.coder),
                    _n(total.resolved, drill(resolved_by=total.coder, **_resolved(period))),
                    _number(total.per_day),
                    *_figures(total.touch_to_resolution),
                    _n(total.claimed_now, drill(assigned=total.coder)),
                ]
                for total in work.totals
            ],
            [
                "coder",
                "resolved",
                "resolved_per_day",
                "touch_to_resolution_median_minutes",
                "touch_to_resolution_p90_minutes",
                "claimed_now",
            ],
        ),
        Table(
            "coders_daily",
            f"Orders resolved per coder per day, {span} (UTC days)",
            [
                "Date",
                "Coder",
                "Resolved",
                "Released",
                "Rejected",
                "First touch → resolution, median",
            ],
            [
                [
                    Cell(day.day.isoformat()),
                    Cell(day.coder),
                    _n(day.resolved, drill(resolved_by=day.coder, **_resolved_on(day.day))),
                    _n(day.released),
                    _n(day.rejected),
                    minutes_cell(day.touch_to_resolution.median_minutes),
                ]
                for day in work.days
            ],
            [
                "date",
                "coder",
                "resolved",
                "released",
                "rejected",
                "touch_to_resolution_median_minutes",
            ],
        ),
    ]
    return {table.name: table for table in tables}


def _offices(found: TurnaroundReport, span: str) -> Table:
    """The offices with the most held orders in the range: total, and their busiest day."""
    totals: dict[str, int] = defaultdict(int)
    busiest: dict[str, tuple[int, date]] = {}
    for day, office, n in found.holds_by_office:
        totals[office] += n
        if n > busiest.get(office, (0, day))[0]:
            busiest[office] = (n, day)
    top = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:TOP_OFFICES]
    period = found.period
    return Table(
        "holds_office_range",
        f"Holds by ordering office, orders received {span} (the {TOP_OFFICES} with the most)",
        ["Office", "Held orders", "Busiest day", "Held that day"],
        [
            [
                Cell(office),
                _n(total, drill(**_range(period), path=HELD, office=office)),
                Cell(busiest[office][1].isoformat()),
                _n(
                    busiest[office][0],
                    drill(**_day(busiest[office][1]), path=HELD, office=office),
                ),
            ]
            for office, total in top
        ],
        ["office", "held_orders", "busiest_day", "held_orders_busiest_day"],
    )


def trend_chart(found: TurnaroundReport) -> LineChart:
    """The daily trend as lines (received, held, released, delivered by now); each point
    opens that day's orders."""
    days = [datetime.combine(day.day, time.min, tzinfo=UTC) for day in found.days]
    counts = {
        "received": [d.received for d in found.days],
        "held": [d.held for d in found.days],
        "released": [d.released for d in found.days],
        "delivered": [d.delivered for d in found.days],
    }
    filters = {
        "received": {},
        "held": {"path": HELD},
        "released": {"reached": "released"},
        "delivered": {"reached": "delivered"},
    }
    hrefs = {
        name: [drill(**_day(d.day), **extra) for d in found.days] for name, extra in filters.items()
    }
    return line_chart(
        "Orders received per day", days, counts, hrefs, tick_format="%b %d", point_format="%Y-%m-%d"
    )
