"""Open office queries: the one already asking about the same findings, and closing them all
when the order leaves the queue for good (released, rejected or cancelled).

`close_open_queries` is called, in the caller's transaction, wherever an order reaches one of
those states: a single release (`labintake.release.outbox.enqueue_release`, the coder's
release), the release worker's bulk release (`labintake.release.bulk`), the coder's reject
(`ClarificationQueue.reject`) and the placer's cancel (`labintake.reading.writer`). It only
imports the models, so the release and reading packages may call it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import Session, col, select

from labintake import lifecycle
from labintake.db import utcnow
from labintake.models.queue import OfficeQuery
from labintake.statuses import QueryStatus


class ClosedBecause(StrEnum):
    """Why a query was closed (`OfficeQuery.closed_reason`)."""

    ANSWERED = "answered"  # a recorded contact answered it
    RELEASED = "released"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # the placer cancelled the order
    BY_CODER = "closed"  # a coder closed it (no longer needed)
    SENT_IN_ERROR = "sent_in_error"  # a coder cancelled it


# Reasons that say the order left the queue, not that the office answered.
ORDER_LEFT_THE_QUEUE = (ClosedBecause.RELEASED, ClosedBecause.REJECTED, ClosedBecause.CANCELLED)


def open_query_for(
    session: Session, order_id: int, finding_keys: Sequence[str]
) -> OfficeQuery | None:
    """The order's open query asking about exactly these findings, if there is one."""
    wanted = sorted(finding_keys)
    for query in session.exec(
        select(OfficeQuery)
        .where(OfficeQuery.order_id == order_id, OfficeQuery.status == QueryStatus.OPEN)
        .order_by(col(OfficeQuery.id).desc())
    ):
        if query.questions and sorted(query.finding_keys) == wanted:
            return query
    return None


def close_open_queries(
    session: Session,
    order_ids: Collection[int],
    reason: ClosedBecause,
    *,
    actor: str = "system",
    now: datetime | None = None,
) -> int:
    """Close every open query of these orders, with the reason and a history event per order;
    returns how many were closed. Set-based: one SELECT, one UPDATE, one INSERT of events."""
    if not order_ids:
        return 0
    now = now or utcnow()
    ids = sorted(set(order_ids))
    found = session.execute(
        select(col(OfficeQuery.id), col(OfficeQuery.order_id)).where(
            col(OfficeQuery.order_id).in_(ids), col(OfficeQuery.status) == QueryStatus.OPEN
        )
    ).all()
    if not found:
        return 0
    session.execute(
        update(OfficeQuery)
        .where(col(OfficeQuery.id).in_([query_id for query_id, _ in found]))
        .values(status=QueryStatus.CLOSED, closed_at=now, closed_reason=reason)
    )
    by_order: dict[int, list[int]] = {}
    for query_id, order_id in found:
        by_order.setdefault(order_id, []).append(query_id)
    lifecycle.insert_events(
        session,
        [
            lifecycle.event_row(
                order_id,
                "queries_closed",
                {"query_ids": sorted(query_ids), "reason": reason},
                actor=actor,
                now=now,
            )
            for order_id, query_ids in sorted(by_order.items())
        ],
    )
    return len(found)
