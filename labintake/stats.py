"""The manager's figures: every dashboard, `/api/stats` and `/metrics` number comes from here.

`snapshot(session)` computes them all at one moment (`as_of`); `labintake.stats_drilldown`
lists the orders behind any one number, with the same filters the numbers use.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from labintake.db import utcnow
from labintake.models.messages import InboundMessage
from labintake.models.orders import Finding, Order
from labintake.models.queue import OfficeQuery
from labintake.models.release import OutboxEntry, OutboxStatus
from labintake.queue.open_queries import ORDER_LEFT_THE_QUEUE
from labintake.statuses import (
    QUEUE_STATUSES,
    REVERIFIABLE,
    FindingCode,
    FindingState,
    OrderStatus,
    QueryStatus,
)

STAGES = ("received", "verified", "released", "delivered")
# A person's events that settle a held order (coder productivity).
RESOLVING_ACTIONS = ("released", "rejected")
# Aging buckets of open holds: (name, lower bound in hours, upper bound or None).
AGING_BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("under 4h", 0, 4),
    ("4-24h", 4, 24),
    ("1-3d", 24, 72),
    ("3-7d", 72, 168),
    ("over 7d", 168, None),
)
STAGE_COLUMNS = {
    "received": Order.created_at,
    "verified": Order.verified_at,
    "released": Order.released_at,
    "delivered": Order.delivered_at,
}


@dataclass(frozen=True, slots=True)
class Turnaround:
    count: int
    median_minutes: float | None
    p90_minutes: float | None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Orders received in the window and where each one is now: nothing may vanish."""

    received: int
    delivered: int
    in_progress: dict[str, int]
    closed: dict[str, int]  # rejected, cancelled, error
    unaccounted: int  # released or delivered without a matching outbox message


@dataclass(frozen=True, slots=True)
class Snapshot:
    as_of: datetime
    window_hours: int
    by_status: dict[str, int]
    holds_by_reason: list[tuple[str, int]]
    holds_by_office: list[tuple[str, int]]
    holds_by_sender: list[tuple[str, int]]
    aging: list[tuple[str, int]]
    open_queries_by_office: list[tuple[str, int, datetime]]
    per_hour: list[tuple[datetime, dict[str, int]]]
    turnaround_released: Turnaround
    turnaround_delivered: Turnaround
    turnaround_query: Turnaround  # office query sent -> answered or closed, in the window
    outbox: dict[str, int]
    failing_deliveries: int
    reconciliation: Reconciliation
    messages_received: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # unfinished orders whose diagnoses no loaded ICD-10-CM release covers
    code_tables_out_of_date: int = 0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["as_of"] = self.as_of.isoformat()
        data["per_hour"] = [{"hour": hour.isoformat(), **counts} for hour, counts in self.per_hour]
        data["open_queries_by_office"] = [
            {"office": office, "open": n, "oldest": oldest.isoformat()}
            for office, n, oldest in self.open_queries_by_office
        ]
        for key in ("holds_by_reason", "holds_by_office", "holds_by_sender", "aging"):
            data[key] = [{"name": name, "count": n} for name, n in getattr(self, key)]
        return data


def _minutes(pairs: list[tuple[datetime, datetime]]) -> Turnaround:
    values = sorted((end - start).total_seconds() / 60 for start, end in pairs if end >= start)
    if not values:
        return Turnaround(0, None, None)
    p90 = values[0] if len(values) == 1 else statistics.quantiles(values, n=10)[-1]
    return Turnaround(len(values), round(statistics.median(values), 1), round(p90, 1))


def _grouped(session: Session, column: Any) -> list[tuple[str, int]]:
    rows = session.exec(
        select(column, func.count())
        .where(col(Order.status).in_(QUEUE_STATUSES))
        .group_by(column)
        .order_by(func.count().desc())
    ).all()
    return [(str(name or "(none)"), int(n)) for name, n in rows]


def out_of_date_orders(session: Session) -> int:
    """Unfinished orders (not yet released) with an open CODE_TABLES_OUT_OF_DATE finding: their
    diagnoses were checked against a release that does not cover their date of service."""
    found = session.exec(
        select(func.count(func.distinct(Finding.order_id)))
        .join(Order, col(Order.id) == col(Finding.order_id))
        .where(
            col(Finding.code) == FindingCode.CODE_TABLES_OUT_OF_DATE,
            col(Finding.state) == FindingState.OPEN,
            col(Order.status).in_(REVERIFIABLE),
        )
    ).one()
    return int(found)


def aging_bucket(age_hours: float) -> str:
    for name, low, high in AGING_BUCKETS:
        if age_hours >= low and (high is None or age_hours < high):
            return name
    return AGING_BUCKETS[-1][0]


def snapshot(session: Session, *, window_hours: int = 24, now: datetime | None = None) -> Snapshot:
    """All the dashboard's figures at one moment."""
    now = now or utcnow()
    since = now - timedelta(hours=window_hours)

    by_status = {str(s): 0 for s in OrderStatus}
    for status, n in session.exec(select(Order.status, func.count()).group_by(Order.status)):
        by_status[str(status)] = int(n)

    reasons = session.exec(
        select(Finding.code, func.count(func.distinct(Finding.order_id)))
        .join(Order, col(Order.id) == col(Finding.order_id))
        .where(
            col(Order.status).in_(QUEUE_STATUSES),
            col(Finding.state) == FindingState.OPEN,
            col(Finding.severity) == "hold",
        )
        .group_by(Finding.code)
        .order_by(func.count(func.distinct(Finding.order_id)).desc())
    ).all()

    aging: Counter[str] = Counter({name: 0 for name, _, _ in AGING_BUCKETS})
    for created in session.exec(
        select(Order.created_at).where(col(Order.status).in_(QUEUE_STATUSES))
    ):
        aging[aging_bucket((now - created).total_seconds() / 3600)] += 1

    queries = session.exec(
        select(Order.office_name, func.count(), func.min(OfficeQuery.created_at))
        .join(Order, col(Order.id) == col(OfficeQuery.order_id))
        .where(col(OfficeQuery.status) == QueryStatus.OPEN)
        .group_by(Order.office_name)
        .order_by(func.count().desc())
    ).all()

    hours = [
        (now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=h))
        for h in range(window_hours - 1, -1, -1)
    ]
    per_hour: dict[datetime, dict[str, int]] = {h: dict.fromkeys(STAGES, 0) for h in hours}
    for stage, column in STAGE_COLUMNS.items():
        for (at,) in session.execute(
            select(column).where(column.is_not(None), column >= hours[0])  # type: ignore[union-attr, operator]
        ).all():
            bucket = at.replace(minute=0, second=0, microsecond=0)
            if bucket in per_hour:
                per_hour[bucket][stage] += 1

    # Each interval over the orders that reached its end in the window (the same rows the
    # dashboard's links list: released_at or delivered_at within the window).
    released_pairs = [
        (created, released)
        for created, released in session.execute(
            select(Order.created_at, Order.released_at).where(
                col(Order.released_at).is_not(None), col(Order.released_at) >= since
            )
        ).all()
    ]
    delivered_pairs = [
        (created, delivered)
        for created, delivered in session.execute(
            select(Order.created_at, Order.delivered_at).where(
                col(Order.delivered_at).is_not(None), col(Order.delivered_at) >= since
            )
        ).all()
    ]

    query_pairs = [
        (created, closed)
        for created, closed in session.execute(
            select(OfficeQuery.created_at, OfficeQuery.closed_at).where(
                col(OfficeQuery.closed_at).is_not(None),
                col(OfficeQuery.closed_at) >= since,
                col(OfficeQuery.status).in_([QueryStatus.ANSWERED, QueryStatus.CLOSED]),
                # closed because the order was released, rejected or cancelled: the office
                # did nothing, so it says nothing of the office's turnaround
                col(OfficeQuery.closed_reason).not_in(ORDER_LEFT_THE_QUEUE),
            )
        ).all()
    ]

    outbox = {str(s): 0 for s in OutboxStatus}
    for status, n in session.exec(
        select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)
    ):
        outbox[str(status)] = int(n)
    failing = session.exec(
        select(func.count()).where(
            col(OutboxEntry.status) == OutboxStatus.PENDING, col(OutboxEntry.attempts) > 0
        )
    ).one()
    messages = session.exec(
        select(func.count()).where(col(InboundMessage.received_at) >= since)
    ).one()

    return Snapshot(
        as_of=now,
        window_hours=window_hours,
        by_status=by_status,
        holds_by_reason=[(str(code), int(n)) for code, n in reasons],
        holds_by_office=_grouped(session, Order.office_name),
        holds_by_sender=_grouped(session, Order.sending_facility),
        aging=[(name, aging[name]) for name, _, _ in AGING_BUCKETS],
        open_queries_by_office=[(str(o or "(none)"), int(n), m) for o, n, m in queries],
        per_hour=[(hour, per_hour[hour]) for hour in hours],
        turnaround_released=_minutes(released_pairs),
        turnaround_delivered=_minutes(delivered_pairs),
        turnaround_query=_minutes(query_pairs),
        outbox=outbox,
        failing_deliveries=int(failing),
        reconciliation=reconciliation(session, since),
        messages_received=int(messages),
        code_tables_out_of_date=out_of_date_orders(session),
    )


def reconciliation(session: Session, since: datetime) -> Reconciliation:
    """Every order received since `since`, by where it is now."""
    counts: Counter[str] = Counter()
    for status, n in session.exec(
        select(Order.status, func.count())
        .where(col(Order.created_at) >= since)
        .group_by(Order.status)
    ):
        counts[str(status)] = int(n)
    closed_names = (
        OrderStatus.REJECTED,
        OrderStatus.CANCELLED,
        OrderStatus.ERROR,
    )
    delivered = counts[OrderStatus.DELIVERED]
    closed = {str(name): counts[name] for name in closed_names}
    in_progress = {
        name: n
        for name, n in counts.items()
        if name not in closed_names and name != OrderStatus.DELIVERED
    }
    has_outbox = (
        select(OutboxEntry.id)
        .where(col(OutboxEntry.order_id) == col(Order.id), col(OutboxEntry.kind) == "release")
        .exists()
    )
    unaccounted = session.exec(
        select(func.count()).where(
            col(Order.created_at) >= since,
            col(Order.status).in_([OrderStatus.RELEASED, OrderStatus.DELIVERED]),
            ~has_outbox,
        )
    ).one()
    return Reconciliation(
        received=sum(counts.values()),
        delivered=delivered,
        in_progress=in_progress,
        closed=closed,
        unaccounted=int(unaccounted),
    )
