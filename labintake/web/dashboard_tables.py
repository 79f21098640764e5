"""The dashboard's tables, built from a stats snapshot: each cell's text and the link to the
orders behind it. The same tables feed the page, the CSV exports and the charts."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from labintake.stats import Snapshot
from labintake.web.charts import BarChart, LineChart, bar_chart, line_chart

DRILL = "/dashboard/orders"

# CSV injection (OWASP "CSV Injection" guidance): a spreadsheet runs a cell starting with one
# of these as a formula (=HYPERLINK(...), @SUM(...), -2+3+cmd|...); office and sender names
# come from HL7 messages, so any cell may. Such a cell is prefixed with a single quote, which
# the spreadsheet shows as text; a plain number (-12, +3.5) stays a number.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def spreadsheet_safe(text: str) -> str:
    """`text` as a CSV cell a spreadsheet will not run as a formula."""
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def drill(**params: str | int | None) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{DRILL}?{urlencode(clean)}"


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    href: str | None = None
    numeric: bool = False
    # What the CSV export writes instead of `text` (a bare number for "12 min"; "" for "–").
    raw: str | None = None

    @property
    def csv_text(self) -> str:
        return self.text if self.raw is None else self.raw


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    # The CSV's header row when the screen's differs: units named (`median_minutes`).
    csv_headers: list[str] | None = None

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([spreadsheet_safe(header) for header in self.csv_headers or self.headers])
        for row in self.rows:
            writer.writerow([spreadsheet_safe(cell.csv_text) for cell in row])
        return out.getvalue()


def _n(value: int, href: str) -> Cell:
    return Cell(str(value), href, numeric=True)


def plain_number(value: float) -> str:
    """A number as a spreadsheet reads it: no exponent, no trailing ".0" (180, 54.5)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def minutes_cell(value: float | None) -> Cell:
    """Minutes as people read them ("45 min", "3.2 h"); the CSV gets the bare minutes."""
    if value is None:
        return Cell("–", numeric=True, raw="")
    if value >= 120:
        return Cell(f"{value / 60:.1f} h", numeric=True, raw=plain_number(value))
    return Cell(f"{value:.0f} min", numeric=True, raw=plain_number(value))


def _since(snapshot: Snapshot) -> str:
    return (snapshot.as_of - timedelta(hours=snapshot.window_hours)).isoformat(timespec="seconds")


def build_tables(snapshot: Snapshot) -> dict[str, Table]:
    since = _since(snapshot)
    tables: list[Table] = []
    tables.append(
        Table(
            "status",
            "Orders by status now",
            ["Status", "Orders"],
            [
                [Cell(status.replace("_", " ")), _n(n, drill(status=status))]
                for status, n in snapshot.by_status.items()
            ],
        )
    )
    tables.append(
        Table(
            "throughput",
            f"Orders per hour, last {snapshot.window_hours} hours (UTC)",
            ["Hour (UTC)", "Received", "Verified", "Released", "Delivered"],
            [
                [Cell(hour.strftime("%Y-%m-%d %H:00"))]
                + [
                    _n(counts[stage], drill(stage=stage, hour=hour.isoformat()))
                    for stage in ("received", "verified", "released", "delivered")
                ]
                for hour, counts in snapshot.per_hour
            ],
        )
    )
    tables.append(
        Table(
            "holds_reason",
            "Holds by reason",
            ["Reason", "Held orders"],
            [[Cell(code), _n(n, drill(reason=code))] for code, n in snapshot.holds_by_reason],
        )
    )
    tables.append(
        Table(
            "holds_office",
            "Holds by ordering office",
            ["Office", "Held orders"],
            [[Cell(o), _n(n, drill(office=o))] for o, n in snapshot.holds_by_office],
        )
    )
    tables.append(
        Table(
            "holds_sender",
            "Holds by sender",
            ["Sender", "Held orders"],
            [[Cell(s), _n(n, drill(sender=s))] for s, n in snapshot.holds_by_sender],
        )
    )
    tables.append(
        Table(
            "aging",
            "Age of open holds",
            ["Age", "Held orders"],
            [[Cell(name), _n(n, drill(age=name))] for name, n in snapshot.aging],
        )
    )
    tables.append(
        Table(
            "queries",
            "Open queries by office",
            ["Office", "Open queries", "Oldest open since"],
            [
                [
                    Cell(office),
                    _n(n, drill(office=office)),
                    Cell(oldest.strftime("%Y-%m-%d %H:%M UTC")),
                ]
                for office, n, oldest in snapshot.open_queries_by_office
            ],
        )
    )

    outbox = snapshot.outbox
    tables.append(
        Table(
            "delivery",
            "Delivery to the LIS",
            ["Outbound messages", "Count"],
            [
                [
                    Cell("waiting to be sent"),
                    _n(outbox.get("pending", 0), "/dashboard/outbox?status=pending"),
                ],
                [
                    Cell("failing, retrying"),
                    _n(snapshot.failing_deliveries, "/dashboard/outbox?status=failing"),
                ],
                [
                    Cell("refused by the LIS (held again)"),
                    _n(outbox.get("refused", 0), "/dashboard/outbox?status=refused"),
                ],
                [Cell("dead letters"), _n(outbox.get("dead", 0), "/dashboard/outbox?status=dead")],
                [
                    Cell("delivered"),
                    _n(outbox.get("delivered", 0), "/dashboard/outbox?status=delivered"),
                ],
            ],
        )
    )
    rec = snapshot.reconciliation
    rows = [[Cell("received"), _n(rec.received, drill(since=since))]]
    rows.append([Cell("delivered"), _n(rec.delivered, drill(status="delivered", since=since))])
    for name, n in sorted(rec.in_progress.items()):
        rows.append(
            [Cell(f"in progress: {name.replace('_', ' ')}"), _n(n, drill(status=name, since=since))]
        )
    for name, n in sorted(rec.closed.items()):
        rows.append([Cell(f"closed: {name}"), _n(n, drill(status=name, since=since))])
    rows.append([Cell("unaccounted for"), Cell(str(rec.unaccounted), numeric=True)])
    tables.append(
        Table(
            "reconciliation",
            f"Received vs delivered, last {snapshot.window_hours} hours",
            ["Where the orders are", "Orders"],
            rows,
        )
    )
    return {table.name: table for table in tables}


def build_charts(snapshot: Snapshot) -> dict[str, BarChart | LineChart]:
    hours = [hour for hour, _ in snapshot.per_hour]
    stages = ("delivered", "received", "released")  # drawing order: delivered underneath
    values = {stage: [counts[stage] for _, counts in snapshot.per_hour] for stage in stages}
    hrefs = {stage: [drill(stage=stage, hour=h.isoformat()) for h in hours] for stage in stages}
    statuses = [
        (status.replace("_", " "), n, drill(status=status))
        for status, n in snapshot.by_status.items()
    ]
    return {
        "throughput": line_chart("Orders per hour", hours, values, hrefs),
        "status": bar_chart("Orders by status now", statuses, colour="#3f6fb5"),
        "holds_reason": bar_chart(
            "Holds by reason",
            [(code, n, drill(reason=code)) for code, n in snapshot.holds_by_reason],
            colour="#b3541e",
            label_width=200,
        ),
        "holds_office": bar_chart(
            "Holds by ordering office",
            [(o, n, drill(office=o)) for o, n in snapshot.holds_by_office[:10]],
            colour="#7a5cb8",
            label_width=200,
        ),
        "holds_sender": bar_chart(
            "Holds by sender",
            [(o, n, drill(sender=o)) for o, n in snapshot.holds_by_sender[:10]],
            colour="#5c7cb8",
            label_width=200,
        ),
        "aging": bar_chart(
            "Age of open holds",
            [(name, n, drill(age=name)) for name, n in snapshot.aging],
            colour="#9a5b00",
            label_width=90,
        ),
    }


def as_of_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Tile:
    label: str
    value: int
    href: str | None
    tone: str = ""  # "", "good", "warn", "bad"
    note: str = ""


def build_tiles(snapshot: Snapshot) -> list[Tile]:
    since = _since(snapshot)
    by_status = snapshot.by_status
    held = by_status.get("held", 0) + by_status.get("awaiting_office", 0)
    rec = snapshot.reconciliation
    dead = snapshot.outbox.get("dead", 0)
    window = f"last {snapshot.window_hours} h"
    stale = snapshot.code_tables_out_of_date
    tables_tile = (
        [
            Tile(
                "Code tables out of date",
                stale,
                drill(out_of_date=1),
                "bad",
                "orders checked against an ICD-10-CM release that does not cover their date",
            )
        ]
        if stale
        else []
    )
    return [
        *tables_tile,
        Tile("Received", rec.received, drill(since=since), note=window),
        Tile(
            "On hold now", held, drill(holds=1), "warn" if held else "", "held or awaiting office"
        ),
        Tile(
            "Awaiting the LIS",
            by_status.get("released", 0),
            drill(status="released"),
            note="released, not yet acknowledged",
        ),
        Tile("Delivered", rec.delivered, drill(status="delivered", since=since), "good", window),
        Tile(
            "Failing deliveries",
            snapshot.failing_deliveries,
            "/dashboard/outbox?status=failing",
            "warn" if snapshot.failing_deliveries else "",
            "being retried",
        ),
        Tile(
            "Dead letters",
            dead,
            "/dashboard/outbox?status=dead",
            "bad" if dead else "",
            "re-sendable",
        ),
        Tile(
            "Unaccounted",
            rec.unaccounted,
            None,
            "bad" if rec.unaccounted else "good",
            "received but nowhere: must be 0",
        ),
    ]
