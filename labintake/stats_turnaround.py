"""Turnaround by stage, the daily trend and holds by office over time, for a range of days.

Every figure here is over one cohort: the orders *received* in the range (whole UTC days).
Each order's moments are read from what the workflow already stores, with one query:

- received: `lab_order.created_at`;
- verified: its first `verification` row (later ones are re-verifications);
- held: its first `verification` whose outcome was `held` (no such row: an automatic order);
- first touch: the first `order_event` written by a person (a user of the service: a claim, a
  contact, a query, a correction, a release or a reject) at or after the hold (internal notes
  are audited, not order events, and do not count);
- released and delivered (the LIS's acknowledgement): `lab_order.released_at` and
  `delivered_at`;
- office query and answer: `office_query.created_at` and `closed_at` of an `answered` query.

Automatic and held orders are reported apart: the automatic ones are released seconds after
they arrive and would hide the held ones in a common median. An interval that has begun but
not ended yet (held, not yet released) is counted as `open`, not in the median.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, text
from sqlalchemy import select as columns
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from labintake.errors import WorkflowError
from labintake.models.orders import Order, OrderEvent, Verification
from labintake.models.queue import OfficeQuery
from labintake.models.users import User
from labintake.sql_minutes import MINUTES_PER_DAY, epoch_minutes
from labintake.statuses import OrderStatus, QueryStatus

MAX_RANGE_DAYS = 92
AUTOMATIC = "automatic"
HELD = "held"
PATHS = (AUTOMATIC, HELD)


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days, `first` to `last` included."""

    first: date
    last: date

    @classmethod
    def of(cls, first: date, last: date) -> Period:
        if last < first:
            raise WorkflowError(
                "the range ends before it starts: pick an end on or after the start", field="end"
            )
        days = (last - first).days + 1
        if days > MAX_RANGE_DAYS:
            raise WorkflowError(
                f"the range spans {days} days; pick at most {MAX_RANGE_DAYS} days "
                "(export a range at a time for longer periods)",
                field="start",
            )
        return cls(first, last)

    @classmethod
    def ending(cls, last: date, days: int) -> Period:
        return cls.of(last - timedelta(days=days - 1), last)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the range."""
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


@dataclass(frozen=True, slots=True)
class Figures:
    """One interval over a set of orders: how many ended, median and 90th percentile in
    minutes, and how many have begun without ending yet."""

    count: int
    median_minutes: float | None
    p90_minutes: float | None
    open: int = 0


def figures(minutes: Iterable[float], open_count: int = 0) -> Figures:
    """Median and 90th percentile, interpolated between the observed values (the inclusive
    method: the 90th percentile never lies beyond the slowest order, even with few orders)."""
    values = sorted(minutes)
    if not values:
        return Figures(0, None, None, open_count)
    p90 = (
        values[0]
        if len(values) == 1
        else statistics.quantiles(values, n=10, method="inclusive")[-1]
    )
    return Figures(len(values), round(statistics.median(values), 1), round(p90, 1), open_count)


EPOCH = date(1970, 1, 1)


def day_of(minutes: float) -> date:
    """The UTC day of a moment given in minutes since the epoch."""
    return EPOCH + timedelta(days=int(minutes // MINUTES_PER_DAY))


@dataclass(frozen=True, slots=True)
class Timeline:
    """The moments of one order received in the range, in minutes since the epoch (UTC);
    None: not reached yet."""

    order_id: int
    office: str
    status: str
    received_at: float
    verified_at: float | None
    held_at: float | None
    touched_at: float | None
    released_at: float | None
    delivered_at: float | None

    @property
    def path(self) -> str:
        """held, automatic, or "" for an order never verified (an error, or still waiting)."""
        if self.held_at is not None:
            return HELD
        return AUTOMATIC if self.verified_at is not None else ""

    @property
    def day(self) -> date:
        return day_of(self.received_at)


# (key, label, paths it applies to, start moment, end moment)
STAGES: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("received_verified", "received → verified", PATHS, "received_at", "verified_at"),
    ("held_touched", "held → first touch", (HELD,), "held_at", "touched_at"),
    ("query_answered", "office query → answer", (HELD,), "", ""),
    ("held_released", "held → released", (HELD,), "held_at", "released_at"),
    ("released_delivered", "released → delivered", PATHS, "released_at", "delivered_at"),
    ("received_released", "received → released", PATHS, "received_at", "released_at"),
)


@dataclass(frozen=True, slots=True)
class StageFigures:
    key: str
    label: str
    path: str  # automatic | held
    figures: Figures


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    received: int
    automatic: int
    held: int
    released: int  # of the day's orders, released by now
    delivered: int  # of the day's orders, acknowledged by the LIS by now
    automatic_released: Figures  # received -> released, automatic orders
    held_released: Figures  # held -> released, held orders


@dataclass(frozen=True, slots=True)
class TurnaroundReport:
    period: Period
    orders: int
    stages: list[StageFigures]
    days: list[Day]
    holds_by_office: list[tuple[date, str, int]]  # (day, office, held orders received that day)


def timelines(session: Session, period: Period) -> list[Timeline]:
    """The moments of every order received in `period`: one query through the index on the
    arrival time, correlated subqueries on indexed order ids, every moment as a float."""
    first = aliased(Verification)
    held = aliased(Verification)
    event = aliased(OrderEvent)
    # Correlated with the order even where it is nested in the first-touch subquery.
    held_at = (
        select(func.min(held.at))
        .where(col(held.order_id) == col(Order.id), col(held.outcome) == OrderStatus.HELD)
        .correlate(Order)
        .scalar_subquery()
    )
    touched_at = (
        select(func.min(event.at))
        .where(
            col(event.order_id) == col(Order.id),
            col(event.actor).in_(select(User.username)),
            col(event.at) >= held_at,
        )
        .scalar_subquery()
    )
    verified_at = (
        select(func.min(first.at)).where(col(first.order_id) == col(Order.id)).scalar_subquery()
    )
    statement = (
        columns(
            col(Order.id),
            col(Order.office_name),
            col(Order.status),
            epoch_minutes(col(Order.created_at)),
            epoch_minutes(verified_at),
            epoch_minutes(held_at),
            epoch_minutes(touched_at),
            epoch_minutes(col(Order.released_at)),
            epoch_minutes(col(Order.delivered_at)),
        )
        .where(col(Order.created_at) >= period.start, col(Order.created_at) < period.end)
        .order_by(col(Order.created_at))
    )
    if session.get_bind().dialect.name == "postgresql":
        # Its cost estimate sends PostgreSQL into JIT-compiling this query, which takes
        # longer than running it.
        session.execute(text("SET LOCAL jit = off"))
    return [
        Timeline(i or 0, str(office or "(none)"), str(status), *moments)
        for i, office, status, *moments in session.connection().execute(statement)
    ]


def query_intervals(session: Session, period: Period) -> tuple[list[float], int]:
    """Office query to the office's answer, for the queries of orders received in `period`:
    the minutes of each answered query, and how many are still open."""
    rows = (
        session.connection()
        .execute(
            columns(
                epoch_minutes(col(OfficeQuery.created_at)),
                epoch_minutes(col(OfficeQuery.closed_at)),
                col(OfficeQuery.status),
            )
            .join(Order, col(Order.id) == col(OfficeQuery.order_id))
            .where(col(Order.created_at) >= period.start, col(Order.created_at) < period.end)
        )
        .all()
    )
    answered = [
        max(0.0, closed - created)
        for created, closed, status in rows
        if status == QueryStatus.ANSWERED and closed is not None
    ]
    still_open = sum(1 for _, _, status in rows if status == QueryStatus.OPEN)
    return answered, still_open


def _stage(orders: list[Timeline], begin: str, end: str) -> Figures:
    minutes: list[float] = []
    still_open = 0
    for order in orders:
        started: float | None = getattr(order, begin)
        ended: float | None = getattr(order, end)
        if started is None:
            continue
        if ended is None or ended < started:
            still_open += 1 if order.status not in _CLOSED else 0
            continue
        minutes.append(ended - started)
    return figures(minutes, still_open)


_CLOSED = ("rejected", "cancelled", "error")


def report(session: Session, period: Period) -> TurnaroundReport:
    """Turnaround by stage, the daily trend and holds by office for the orders received in
    `period`."""
    orders = timelines(session, period)
    by_path: dict[str, list[Timeline]] = {path: [] for path in PATHS}
    for order in orders:
        if order.path:
            by_path[order.path].append(order)
    answered, open_queries = query_intervals(session, period)
    stages: list[StageFigures] = []
    for key, label, paths, begin, end in STAGES:
        for path in paths:
            if key == "query_answered":
                found = figures(answered, open_queries)
            else:
                found = _stage(by_path[path], begin, end)
            stages.append(StageFigures(key, label, path, found))
    return TurnaroundReport(
        period=period,
        orders=len(orders),
        stages=stages,
        days=_days(period, orders),
        holds_by_office=_holds_by_office(orders),
    )


def _days(period: Period, orders: list[Timeline]) -> list[Day]:
    by_day: dict[date, list[Timeline]] = defaultdict(list)
    for order in orders:
        by_day[order.day].append(order)
    days = []
    for day in period.days:
        todays = by_day.get(day, [])
        automatic = [o for o in todays if o.path == AUTOMATIC]
        held = [o for o in todays if o.path == HELD]
        days.append(
            Day(
                day=day,
                received=len(todays),
                automatic=len(automatic),
                held=len(held),
                released=sum(1 for o in todays if o.released_at is not None),
                delivered=sum(1 for o in todays if o.delivered_at is not None),
                automatic_released=_stage(automatic, "received_at", "released_at"),
                held_released=_stage(held, "held_at", "released_at"),
            )
        )
    return days


def _holds_by_office(orders: list[Timeline]) -> list[tuple[date, str, int]]:
    counts: Counter[tuple[date, str]] = Counter((o.day, o.office) for o in orders if o.path == HELD)
    return [(day, office, n) for (day, office), n in sorted(counts.items())]


def stage_figures(found: TurnaroundReport, key: str, path: str) -> Figures | None:
    for stage in found.stages:
        if stage.key == key and stage.path == path:
            return stage.figures
    return None
