"""The queue of held orders: filters, one search box, urgent-first keyset pages, counts.

Pages are keyset-paginated over the partial index `ix_order_queue_due` (held and
awaiting-office orders by `due_at`, `id`), so page N costs what page 1 costs.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, text, tuple_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from labintake.db import utcnow
from labintake.errors import WorkflowError
from labintake.models.messages import InboundMessage
from labintake.models.orders import Finding, Order
from labintake.models.queue import OfficeContact
from labintake.statuses import OrderStatus

QUEUE_STATUSES = (OrderStatus.HELD.value, OrderStatus.AWAITING_OFFICE.value)
# Literal, so SQLite recognises the partial index's WHERE clause in the query.
IN_QUEUE = text("lab_order.status IN ('held', 'awaiting_office')")
MAX_PAGE = 200


class QueueSort(StrEnum):
    URGENT = "urgent"  # next action due first (then oldest)
    OLDEST = "oldest"  # arrival order
    NEWEST = "newest"


class DueFilter(StrEnum):
    OVERDUE = "overdue"
    TODAY = "today"  # due by the end of today (UTC), overdue included


@dataclass(frozen=True, slots=True)
class QueueFilter:
    reason: str = ""  # a finding code
    office: str = ""
    sender: str = ""  # sending facility
    assignee: str = ""  # a username, "unassigned", or "" for anyone
    status: str = ""  # held | awaiting_office | "" for both
    min_age_days: int | None = None
    due: DueFilter | None = None
    search: str = ""  # patient name, MRN, placer order number or message control id
    zone: tzinfo = UTC  # the coder's time zone, for "due today"

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "office": self.office,
            "sender": self.sender,
            "assignee": self.assignee,
            "status": self.status,
            "min_age_days": self.min_age_days,
            "due": self.due.value if self.due else "",
            "search": self.search,
        }


@dataclass(frozen=True, slots=True)
class QueueRow:
    order_id: int
    row_version: int
    status: str
    patient: str
    mrn: str
    placer_order_number: str
    sender: str
    office: str
    office_phone: str
    reasons: tuple[str, ...]
    created_at: datetime
    due_at: datetime
    assigned_to: str | None
    attempts: int

    def age(self, now: datetime) -> timedelta:
        return now - self.created_at

    def time_left(self, now: datetime) -> timedelta:
        return self.due_at - now


@dataclass(frozen=True, slots=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None
    now: datetime
    filters: QueueFilter
    sort: QueueSort


def make_cursor(sort: QueueSort, due_at: datetime, order_id: int) -> str:
    """The cursor of the page that starts after (`due_at`, `order_id`)."""
    raw = json.dumps([sort.value, due_at.isoformat(), order_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: QueueSort) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, due, order_id = json.loads(base64.urlsafe_b64decode(padded))
        if kind != sort.value:
            raise ValueError("cursor from another sort order")
        when, last_id = datetime.fromisoformat(due), int(order_id)
        if when.tzinfo is None or not 0 <= last_id < 2**31:
            raise ValueError("cursor out of range")
        return when, last_id
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"bad page cursor: {exc}") from exc


SEARCH_LIMIT = 500


def _like_prefix(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _name_condition(query: str) -> ColumnElement[bool] | None:
    """A case-blind prefix of the family name ("Doe" or "Doe, Ja"), as an index range."""
    family, _, given = query.replace(",", " ").strip().partition(" ")
    low = family.lower()
    if not low:
        return None
    high = low[:-1] + chr(ord(low[-1]) + 1)
    lowered = col(Order.family_name_key)
    condition: ColumnElement[bool] = and_(lowered >= low, lowered < high)
    if given.strip():
        condition = and_(
            condition,
            func.lower(Order.patient_given_name).like(
                _like_prefix(given.strip().lower()), escape="\\"
            ),
        )
    return condition


def search_ids(session: Session, query: str, *, queue_only: bool) -> list[int]:
    """Orders matching the one search box: exact MRN, placer order number or message control
    id, or a family-name prefix. Each is an indexed look-up; at most SEARCH_LIMIT ids each."""
    q = "".join(c for c in query if c.isprintable()).strip()
    if not q:
        return []
    control_ids = select(InboundMessage.id).where(InboundMessage.control_id == q)
    lookups: list[ColumnElement[bool]] = [
        col(Order.patient_mrn) == q,
        col(Order.placer_order_number) == q,
        col(Order.message_id).in_(control_ids),
    ]
    name = _name_condition(q)
    if name is not None:
        lookups.append(name)
    found: set[int] = set()
    for condition in lookups:
        statement = select(Order.id).where(condition)
        if queue_only:
            statement = statement.where(IN_QUEUE)
        found.update(i for i in session.exec(statement.limit(SEARCH_LIMIT)) if i is not None)
    return sorted(found)


def _conditions(session: Session, filters: QueueFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [IN_QUEUE]  # type: ignore[list-item]
    if filters.status:
        if filters.status not in QUEUE_STATUSES:
            raise WorkflowError(f"status filter must be one of {', '.join(QUEUE_STATUSES)}")
        conditions.append(col(Order.status) == filters.status)
    if filters.reason:
        conditions.append(
            exists().where(
                col(Finding.order_id) == col(Order.id),
                col(Finding.state) == "open",
                col(Finding.code) == filters.reason,
            )
        )
    if filters.office:
        conditions.append(col(Order.office_name) == filters.office)
    if filters.sender:
        conditions.append(col(Order.sending_facility) == filters.sender)
    if filters.assignee == "unassigned":
        conditions.append(col(Order.assigned_to).is_(None))
    elif filters.assignee:
        conditions.append(col(Order.assigned_to) == filters.assignee)
    if filters.min_age_days is not None:
        conditions.append(col(Order.created_at) <= now - timedelta(days=filters.min_age_days))
    if filters.due is DueFilter.OVERDUE:
        conditions.append(col(Order.due_at) < now)
    elif filters.due is DueFilter.TODAY:
        conditions.append(col(Order.due_at) < end_of_day(now, filters.zone))
    if filters.search.strip():
        conditions.append(col(Order.id).in_(search_ids(session, filters.search, queue_only=True)))
    return conditions


def end_of_day(now: datetime, zone: tzinfo = UTC) -> datetime:
    """Midnight after `now` in the coder's time zone ("due today" means before it)."""
    local = now.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=zone)


_ROW_COLUMNS = (
    col(Order.id),
    col(Order.row_version),
    col(Order.status),
    col(Order.patient_family_name),
    col(Order.patient_given_name),
    col(Order.patient_mrn),
    col(Order.placer_order_number),
    col(Order.sending_facility),
    col(Order.office_name),
    col(Order.office_phone),
    col(Order.created_at),
    col(Order.due_at),
    col(Order.assigned_to),
)


def list_queue(
    session: Session,
    filters: QueueFilter,
    *,
    sort: QueueSort = QueueSort.URGENT,
    cursor: str | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> QueuePage:
    """One page of the queue, most urgent first by default; `next_cursor` continues it."""
    now = now or utcnow()
    limit = max(1, min(limit, MAX_PAGE))
    statement = sa_select(*_ROW_COLUMNS).where(*_conditions(session, filters, now))
    if sort is QueueSort.URGENT:
        if cursor:
            due, last_id = _decode_cursor(cursor, sort)
            statement = statement.where(tuple_(col(Order.due_at), col(Order.id)) > (due, last_id))
        statement = statement.order_by(col(Order.due_at), col(Order.id))
    else:
        if cursor:
            _, last_id = _decode_cursor(cursor, sort)
            newer = sort is QueueSort.NEWEST
            statement = statement.where(
                col(Order.id) < last_id if newer else col(Order.id) > last_id
            )
        statement = statement.order_by(
            col(Order.id).desc() if sort is QueueSort.NEWEST else col(Order.id)
        )
    raw_rows = list(session.execute(statement.limit(limit + 1)))
    more = len(raw_rows) > limit
    raw_rows = raw_rows[:limit]
    ids = [r[0] for r in raw_rows]
    reasons = open_reasons(session, ids)
    attempts = attempt_counts(session, ids)
    rows = [
        QueueRow(
            order_id=r[0],
            row_version=r[1],
            status=r[2],
            patient=", ".join(p for p in (r[3], r[4]) if p),
            mrn=r[5],
            placer_order_number=r[6],
            sender=r[7],
            office=r[8],
            office_phone=r[9],
            reasons=tuple(reasons.get(r[0], ())),
            created_at=r[10],
            due_at=r[11],
            assigned_to=r[12],
            attempts=attempts.get(r[0], 0),
        )
        for r in raw_rows
    ]
    next_cursor = make_cursor(sort, rows[-1].due_at, rows[-1].order_id) if more and rows else None
    return QueuePage(rows=rows, next_cursor=next_cursor, now=now, filters=filters, sort=sort)


def open_reasons(session: Session, order_ids: list[int]) -> dict[int, list[str]]:
    """Open hold and warn finding codes per order (holds first)."""
    if not order_ids:
        return {}
    statement = (
        select(Finding.order_id, Finding.code, Finding.severity)
        .where(col(Finding.order_id).in_(order_ids), col(Finding.state) == "open")
        .order_by(col(Finding.order_id), col(Finding.id))
    )
    found: dict[int, list[str]] = defaultdict(list)
    for order_id, code, severity in session.exec(statement):
        if severity == "info" or code in found[order_id]:
            continue
        if severity == "hold":
            found[order_id].insert(0, code)
        else:
            found[order_id].append(code)
    return dict(found)


def attempt_counts(session: Session, order_ids: list[int]) -> dict[int, int]:
    if not order_ids:
        return {}
    statement = (
        select(OfficeContact.order_id, func.count())
        .where(col(OfficeContact.order_id).in_(order_ids))
        .group_by(col(OfficeContact.order_id))
    )
    return {order_id: count for order_id, count in session.exec(statement)}


def queue_counts(
    session: Session, username: str, now: datetime | None = None, zone: tzinfo = UTC
) -> dict[str, int]:
    """How many orders are in the queue, mine, overdue, due by the end of today (UTC).

    One pass over the queue's partial index (it holds `due_at` and `status`), plus an
    index look-up for "mine"."""
    now = now or utcnow()
    due = col(Order.due_at)
    totals = session.execute(
        sa_select(
            func.count(),
            func.coalesce(func.sum(case((due < now, 1), else_=0)), 0),
            func.coalesce(func.sum(case((due < end_of_day(now, zone), 1), else_=0)), 0),
        )
        .select_from(Order)
        .where(IN_QUEUE)
    ).one()
    mine = session.execute(
        sa_select(func.count())
        .select_from(Order)
        .where(col(Order.assigned_to) == username, col(Order.status).in_(QUEUE_STATUSES))
    ).scalar_one()
    return {
        "all": int(totals[0]),
        "mine": int(mine),
        "overdue": int(totals[1]),
        "today": int(totals[2]),
    }


def filter_choices(session: Session) -> dict[str, list[str]]:
    """Values offered in the filter drop-downs: senders and assignees seen in the queue."""
    senders = session.exec(select(Order.sending_facility).where(IN_QUEUE).distinct().limit(200))
    assignees = session.exec(
        select(Order.assigned_to)
        .where(IN_QUEUE, col(Order.assigned_to).is_not(None))
        .distinct()
        .limit(200)
    )
    return {
        "senders": sorted(s for s in senders if s),
        "assignees": sorted(a for a in assignees if a),
    }


def next_in_queue(
    session: Session, after_order_id: int, username: str, now: datetime | None = None
) -> int | None:
    """The order to open after working `after_order_id`: mine first, then unassigned."""
    now = now or utcnow()
    for assignee in (username, "unassigned"):
        page = list_queue(session, QueueFilter(assignee=assignee), limit=2, now=now)
        for row in page.rows:
            if row.order_id != after_order_id:
                return row.order_id
    return None
