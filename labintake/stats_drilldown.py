"""The orders behind one dashboard number: `order_rows(session, ...)` takes the filters the
figures of `labintake.stats` use (status, hold reason, office, sender, aging bucket, stage and
hour, arrival range, path, coder) and lists ids, places and times, never patient data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from labintake.db import utcnow
from labintake.models.orders import Finding, Order, OrderEvent, Verification
from labintake.stats import AGING_BUCKETS, RESOLVING_ACTIONS, STAGE_COLUMNS
from labintake.statuses import (
    QUEUE_STATUSES,
    REVERIFIABLE,
    FindingCode,
    FindingState,
    OrderStatus,
)


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: int
    status: str
    sending_facility: str
    office_name: str
    placer_order_number: str
    received_at: datetime
    released_at: datetime | None
    delivered_at: datetime | None


def order_rows(
    session: Session,
    *,
    status: str | None = None,
    holds: bool = False,
    reason: str | None = None,
    office: str | None = None,
    sender: str | None = None,
    age: str | None = None,
    stage: str | None = None,
    out_of_date: bool = False,
    hour: datetime | None = None,
    since: datetime | None = None,
    received_from: datetime | None = None,
    received_until: datetime | None = None,
    path: str | None = None,
    reached: str | None = None,
    assigned: str | None = None,
    resolved_by: str | None = None,
    resolved_from: datetime | None = None,
    resolved_until: datetime | None = None,
    limit: int = 500,
    now: datetime | None = None,
) -> list[OrderRow]:
    """The orders behind one dashboard number (no patient data: ids, places and times).

    `received_from`/`received_until` bound the arrival; `path` is "held" (held at some
    point) or "automatic" (verified, never held); `reached` a stage the order got to;
    `assigned` the coder who claimed it (orders on hold); `resolved_by` the coder who released
    or rejected it (between `resolved_from` and `resolved_until`)."""
    now = now or utcnow()
    query = select(Order)
    if status:
        query = query.where(Order.status == status)
    currently_held = holds or reason or age or office is not None or sender is not None
    if (currently_held or assigned is not None) and not status and not path:
        query = query.where(col(Order.status).in_(QUEUE_STATUSES))
    if received_from is not None:
        query = query.where(col(Order.created_at) >= received_from)
    if received_until is not None:
        query = query.where(col(Order.created_at) < received_until)
    if path:
        held_once = (
            select(Verification.id)
            .where(
                col(Verification.order_id) == col(Order.id),
                col(Verification.outcome) == OrderStatus.HELD,
            )
            .exists()
        )
        if path == "held":
            query = query.where(held_once)
        else:
            verified = select(Verification.id).where(col(Verification.order_id) == col(Order.id))
            query = query.where(~held_once, verified.exists())
    if reached == "verified":  # as the turnaround figures read it: a verification exists
        verified = select(Verification.id).where(col(Verification.order_id) == col(Order.id))
        query = query.where(verified.exists())
    elif reached in STAGE_COLUMNS:
        query = query.where(STAGE_COLUMNS[reached].is_not(None))  # type: ignore[union-attr]
    if assigned is not None:
        query = query.where(Order.assigned_to == assigned)
    if resolved_by is not None:
        resolution = select(OrderEvent.id).where(
            col(OrderEvent.order_id) == col(Order.id),
            col(OrderEvent.actor) == resolved_by,
            col(OrderEvent.action).in_(RESOLVING_ACTIONS),
        )
        if resolved_from is not None:
            resolution = resolution.where(col(OrderEvent.at) >= resolved_from)
        if resolved_until is not None:
            resolution = resolution.where(col(OrderEvent.at) < resolved_until)
        query = query.where(resolution.exists())
    if reason:
        query = query.where(
            select(Finding.id)
            .where(
                col(Finding.order_id) == col(Order.id),
                col(Finding.code) == reason,
                col(Finding.state) == FindingState.OPEN,
                col(Finding.severity) == "hold",
            )
            .exists()
        )
    if out_of_date:
        query = query.where(
            col(Order.status).in_(REVERIFIABLE),
            select(Finding.id)
            .where(
                col(Finding.order_id) == col(Order.id),
                col(Finding.code) == FindingCode.CODE_TABLES_OUT_OF_DATE,
                col(Finding.state) == FindingState.OPEN,
            )
            .exists(),
        )
    if office is not None:
        query = query.where(Order.office_name == ("" if office == "(none)" else office))
    if sender is not None:
        query = query.where(Order.sending_facility == ("" if sender == "(none)" else sender))
    if age:
        for name, low, high in AGING_BUCKETS:
            if name == age:
                query = query.where(col(Order.created_at) <= now - timedelta(hours=low))
                if high is not None:
                    query = query.where(col(Order.created_at) > now - timedelta(hours=high))
    if stage in STAGE_COLUMNS:
        column = STAGE_COLUMNS[stage]
        if hour is not None:
            query = query.where(column >= hour, column < hour + timedelta(hours=1))  # type: ignore[operator]
        elif since is not None:
            query = query.where(column >= since)  # type: ignore[operator]
    elif since is not None:
        query = query.where(col(Order.created_at) >= since)
    query = query.order_by(col(Order.created_at)).limit(limit)
    return [
        OrderRow(
            id=o.id or 0,
            status=o.status,
            sending_facility=o.sending_facility,
            office_name=o.office_name,
            placer_order_number=o.placer_order_number,
            received_at=o.created_at,
            released_at=o.released_at,
            delivered_at=o.delivered_at,
        )
        for o in session.exec(query)
    ]
