"""Coder productivity and work in progress, for the manager's dashboard.

- Orders resolved per coder per day (UTC): orders with a `released` or `rejected` event written
  by that coder that day. Each order counts once per coder and day (released, refused by the
  LIS and released again the same day: one order), and once per coder in the range's total,
  so that every count lists exactly its orders.
- Time from first touch to resolution: from the coder's own first action on that order (the
  first `order_event` they wrote on it) to the resolving event; median and 90th percentile.
- Work in progress: orders on hold (held or awaiting the office) claimed by each coder now.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func
from sqlalchemy import select as columns
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from labintake.models.orders import Order, OrderEvent
from labintake.models.users import User
from labintake.sql_minutes import epoch_minutes
from labintake.stats import RESOLVING_ACTIONS
from labintake.stats_turnaround import Figures, Period, day_of, figures
from labintake.statuses import QUEUE_STATUSES


@dataclass(frozen=True, slots=True)
class CoderDay:
    coder: str
    day: date
    resolved: int
    released: int
    rejected: int
    touch_to_resolution: Figures


@dataclass(frozen=True, slots=True)
class CoderTotal:
    coder: str
    resolved: int
    per_day: float  # resolved / days in the range
    touch_to_resolution: Figures
    claimed_now: int


@dataclass(frozen=True, slots=True)
class Productivity:
    days: list[CoderDay]
    totals: list[CoderTotal]


def resolutions(session: Session, period: Period) -> list[tuple[str, int, str, float, float]]:
    """(coder, order id, action, resolved at, coder's first touch of that order) for each
    resolution by a person in `period`, oldest first (bounded by the `action, at` index of
    the events); moments in minutes since the epoch."""
    own = aliased(OrderEvent)
    resolving = aliased(OrderEvent)
    first_touch = (
        select(func.min(own.at))
        .where(col(own.order_id) == col(resolving.order_id), col(own.actor) == col(resolving.actor))
        .scalar_subquery()
    )
    rows = (
        session.connection()
        .execute(
            columns(
                col(resolving.actor),
                col(resolving.order_id),
                col(resolving.action),
                epoch_minutes(col(resolving.at)),
                epoch_minutes(first_touch),
            )
            .where(
                col(resolving.action).in_(RESOLVING_ACTIONS),
                col(resolving.at) >= period.start,
                col(resolving.at) < period.end,
                col(resolving.actor).in_(select(User.username)),
            )
            .order_by(col(resolving.at), col(resolving.id))
        )
        .all()
    )
    return [
        (str(actor), int(order_id), str(action), at, touch)
        for actor, order_id, action, at, touch in rows
    ]


def claimed_now(session: Session) -> dict[str, int]:
    """Orders on hold claimed by each coder now."""
    rows = session.execute(
        select(Order.assigned_to, func.count())
        .where(col(Order.assigned_to).is_not(None), col(Order.status).in_(QUEUE_STATUSES))
        .group_by(Order.assigned_to)
    ).all()
    return {str(coder): int(n) for coder, n in rows}


def productivity(session: Session, period: Period) -> Productivity:
    found = resolutions(session, period)
    wip = claimed_now(session)
    by_day: dict[tuple[str, date], list[tuple[str, float]]] = defaultdict(list)
    by_coder: dict[str, list[float]] = defaultdict(list)
    seen_day: set[tuple[str, date, int]] = set()
    seen: set[tuple[str, int]] = set()
    for coder, order_id, action, at, touch in found:
        minutes = max(0.0, at - touch)
        day = day_of(at)
        if (coder, day, order_id) not in seen_day:  # the first resolution of the day counts
            seen_day.add((coder, day, order_id))
            by_day[(coder, day)].append((action, minutes))
        if (coder, order_id) not in seen:
            seen.add((coder, order_id))
            by_coder[coder].append(minutes)
    days = [
        CoderDay(
            coder=coder,
            day=day,
            resolved=len(items),
            released=sum(1 for action, _ in items if action == "released"),
            rejected=sum(1 for action, _ in items if action == "rejected"),
            touch_to_resolution=figures(m for _, m in items),
        )
        for (coder, day), items in sorted(by_day.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    n_days = len(period.days)
    totals = [
        CoderTotal(
            coder=coder,
            resolved=len(by_coder.get(coder, [])),
            per_day=round(len(by_coder.get(coder, [])) / n_days, 1),
            touch_to_resolution=figures(by_coder.get(coder, [])),
            claimed_now=wip.get(coder, 0),
        )
        for coder in sorted(set(by_coder) | set(wip))
    ]
    return Productivity(days, totals)
