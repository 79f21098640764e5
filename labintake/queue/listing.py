"""The queue of held orders: filters, one search box, urgent-first keyset pages, counts.

How a page is ordered and continued (sort keys, cursors) is `labintake.queue.ordering`.

Pages are keyset-paginated over the partial index `ix_order_queue_due` (held and
awaiting-office orders by `due_at`, `id`), so page N costs what page 1 costs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, text, tuple_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from labintake.db import utcnow
from labintake.errors import WorkflowError
from labintake.models.messages import InboundMessage
from labintake.models.orders import Finding, Order, OrderTest
from labintake.models.queue import OfficeContact
from labintake.queue.ordering import QueueSort, decode_cursor, make_cursor, sort_keys
from labintake.search_keys import PRIORITY_LABELS, ROUTINE_RANK, STAT_RANK, fold
from labintake.statuses import QUEUE_STATUSES, FindingState

# Literal, so SQLite recognises the partial index's WHERE clause in the query.
IN_QUEUE = text("lab_order.status IN ('held', 'awaiting_office')")
MAX_PAGE = 200


class DueFilter(StrEnum):
    OVERDUE = "overdue"
    TODAY = "today"  # due by the end of today (UTC), overdue included


class PriorityFilter(StrEnum):
    STAT = "stat"  # STAT only
    URGENT = "urgent"  # STAT, ASAP and timing critical


@dataclass(frozen=True, slots=True)
class QueueFilter:
    reason: str = ""  # a finding code
    office: str = ""  # a part of the office's name, any case
    sender: str = ""  # sending facility
    assignee: str = ""  # a username, "unassigned", or "" for anyone
    status: str = ""  # held | awaiting_office | "" for both
    min_age_days: int | None = None
    due: DueFilter | None = None
    search: str = ""  # patient name, MRN, placer order number or message control id
    priority: PriorityFilter | None = None
    zone: tzinfo = UTC  # the coder's time zone, for "due today"

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "office": self.office,
            "sender": self.sender,
            "assignee": self.assignee,
            "status": self.status,
            "min_age_days": self.min_age_days,
            "due": self.due or "",
            "search": self.search,
            "priority": self.priority or "",
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
    reasons: tuple[str, ...]  # open hold codes first, then warnings
    created_at: datetime
    due_at: datetime
    assigned_to: str | None
    attempts: int
    priority_rank: int = ROUTINE_RANK
    date_of_service: date | None = None
    payer: str = ""
    tests: tuple[str, ...] = ()  # the tests' codes as sent
    warnings: frozenset[str] = frozenset()  # which of `reasons` are warnings, not holds

    @property
    def priority(self) -> str:
        return PRIORITY_LABELS.get(self.priority_rank, "routine")

    @property
    def holds(self) -> tuple[str, ...]:
        return tuple(r for r in self.reasons if r not in self.warnings)

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


SEARCH_LIMIT = 500


def _like_prefix(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _name_prefix(family: str, given: str) -> ColumnElement[bool] | None:
    """Family name starting with `family` (an index range), given name with `given`."""
    if not family:
        return None
    high = family[:-1] + chr(ord(family[-1]) + 1)
    key = col(Order.family_fold)
    condition: ColumnElement[bool] = and_(key >= family, key < high)
    if given:
        condition = and_(condition, col(Order.given_fold).like(_like_prefix(given), escape="\\"))
    return condition


def _name_conditions(query: str) -> list[ColumnElement[bool]]:
    """A name whatever its case and accents: "Doe", "Doe, Ja" (family first), or "Carlos
    Roberts" (either order: given then family is tried too)."""
    folded = fold(query)
    if "," in folded:
        family, _, given = folded.partition(",")
        found = _name_prefix(family.strip(), given.strip())
        return [found] if found is not None else []
    words = folded.split()
    if not words:
        return []
    conditions = [_name_prefix(words[0], " ".join(words[1:]))]
    if len(words) > 1:
        conditions.append(_name_prefix(" ".join(words[1:]), words[0]))
    return [c for c in conditions if c is not None]


def search_ids(session: Session, query: str, *, queue_only: bool) -> list[int]:
    """Orders matching the one search box: exact MRN, placer order number or message control
    id, or a family-name prefix. Each is an indexed look-up; at most SEARCH_LIMIT ids each."""
    q = "".join(c for c in query if c.isprintable()).strip()
    if not q:
        return []
    # Identifiers as typed, and in upper and lower case ("uxp7003" finds "UXP7003").
    spellings = sorted({q, q.upper(), q.lower()})
    control_ids = select(InboundMessage.id).where(col(InboundMessage.control_id).in_(spellings))
    lookups: list[ColumnElement[bool]] = [
        col(Order.patient_mrn).in_(spellings),
        col(Order.placer_order_number).in_(spellings),
        col(Order.message_id).in_(control_ids),
        *_name_conditions(q),
    ]
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
                col(Finding.state) == FindingState.OPEN,
                col(Finding.code) == filters.reason,
            )
        )
    if filters.office:
        part = _like_prefix(filters.office.lower()).removesuffix("%")
        conditions.append(func.lower(Order.office_name).like(f"%{part}%", escape="\\"))
    if filters.priority is PriorityFilter.STAT:
        conditions.append(col(Order.priority_rank) == STAT_RANK)
    elif filters.priority is PriorityFilter.URGENT:
        conditions.append(col(Order.priority_rank) <= 1)
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
    col(Order.priority_rank),
    col(Order.date_of_service),
    col(Order.payer_company_name),
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
    keys, descending = sort_keys(sort)
    statement = sa_select(*_ROW_COLUMNS, *keys).where(*_conditions(session, filters, now))
    if cursor:
        values, last_id = decode_cursor(cursor, sort)
        position = tuple_(*keys, col(Order.id))
        after = (*values, last_id)
        statement = statement.where(position < after if descending else position > after)
    order_by = [*keys, col(Order.id)]
    statement = statement.order_by(*(k.desc() if descending else k for k in order_by))
    raw_rows = list(session.execute(statement.limit(limit + 1)))
    more = len(raw_rows) > limit
    raw_rows = raw_rows[:limit]
    ids = [r[0] for r in raw_rows]
    reasons, warnings = open_reasons(session, ids), open_warnings(session, ids)
    attempts = attempt_counts(session, ids)
    tests = test_codes(session, ids)
    width = len(_ROW_COLUMNS)
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
            priority_rank=r[13],
            date_of_service=r[14],
            payer=r[15],
            tests=tuple(tests.get(r[0], ())),
            warnings=frozenset(warnings.get(r[0], ())),
        )
        for r in raw_rows
    ]
    next_cursor = None
    if more and raw_rows:
        last = raw_rows[-1]
        next_cursor = make_cursor(sort, list(last[width:]), last[0])
    return QueuePage(rows=rows, next_cursor=next_cursor, now=now, filters=filters, sort=sort)


def open_reasons(session: Session, order_ids: list[int]) -> dict[int, list[str]]:
    """Open hold and warn finding codes per order (holds first)."""
    if not order_ids:
        return {}
    statement = (
        select(Finding.order_id, Finding.code, Finding.severity)
        .where(col(Finding.order_id).in_(order_ids), col(Finding.state) == FindingState.OPEN)
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


def open_warnings(session: Session, order_ids: list[int]) -> dict[int, set[str]]:
    """The open finding codes per order that are warnings only (no hold of the same code)."""
    if not order_ids:
        return {}
    statement = select(Finding.order_id, Finding.code, Finding.severity).where(
        col(Finding.order_id).in_(order_ids), col(Finding.state) == FindingState.OPEN
    )
    warns: dict[int, set[str]] = defaultdict(set)
    holds: dict[int, set[str]] = defaultdict(set)
    for order_id, code, severity in session.exec(statement):
        if severity == "warn":
            warns[order_id].add(code)
        elif severity == "hold":
            holds[order_id].add(code)
    return {i: codes - holds[i] for i, codes in warns.items() if codes - holds[i]}


def test_codes(session: Session, order_ids: list[int]) -> dict[int, list[str]]:
    """The codes of each order's tests as sent, in order."""
    if not order_ids:
        return {}
    statement = (
        select(OrderTest.order_id, OrderTest.sent_code)
        .where(col(OrderTest.order_id).in_(order_ids))
        .order_by(col(OrderTest.order_id), col(OrderTest.seq))
    )
    found: dict[int, list[str]] = defaultdict(list)
    for order_id, code in session.exec(statement):
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
    session: Session,
    after_order_id: int,
    username: str,
    now: datetime | None = None,
    working: tuple[QueueFilter, QueueSort] | None = None,
) -> int | None:
    """The order to open after working `after_order_id`.

    With the list the coder is working (`working`: their filters and sort), the one after it
    in that list (the first, when the order has left the list); then mine, then unassigned."""
    now = now or utcnow()
    if working is not None:
        filters, sort = working
        ids = [
            r.order_id
            for r in list_queue(session, filters, sort=sort, limit=MAX_PAGE, now=now).rows
        ]
        if after_order_id in ids:
            following = ids[ids.index(after_order_id) + 1 :]
            if following:
                return following[0]
        elif ids:
            return ids[0]
    for assignee in (username, "unassigned"):
        page = list_queue(session, QueueFilter(assignee=assignee), limit=2, now=now)
        for row in page.rows:
            if row.order_id != after_order_id:
                return row.order_id
    return None
