"""The write of one batch of read messages: orders, tests, diagnoses, events, message statuses.

All in the caller's transaction, in a handful of multi-row statements (the backlog drain
depends on it). The first statement claims the messages (`status` still as expected), so a
message another worker or a person got to first is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col

from labintake import lifecycle
from labintake.db import utcnow
from labintake.lifecycle import OrderEventKind
from labintake.models import (
    InboundMessage,
    MessageEvent,
    Order,
    OrderDiagnosis,
    OrderTest,
)
from labintake.models.tables import insert_rows, table_of
from labintake.queue.open_queries import ClosedBecause, close_open_queries
from labintake.reading.cancels import resolve_cancels
from labintake.reading.plan import MessagePlan
from labintake.statuses import RELEASED_STATUSES, MessageStatus, OrderStatus

PLACER = "placer"
_ORDERS = table_of(Order)
_TESTS = table_of(OrderTest)
_DIAGNOSES = table_of(OrderDiagnosis)
_MESSAGES = table_of(InboundMessage)
_MESSAGE_EVENTS = table_of(MessageEvent)


def claim(
    session: Session,
    message_ids: Sequence[int],
    status: MessageStatus,
    *,
    count_attempt: bool = True,
) -> set[int]:
    """Take the messages still in `status` for this transaction (counting the attempt unless
    it was counted before reading)."""
    if not message_ids:
        return set()
    attempts = InboundMessage.read_attempts + (1 if count_attempt else 0)
    result = session.execute(
        update(InboundMessage)
        .where(
            col(InboundMessage.id).in_(message_ids),
            col(InboundMessage.status) == status,
        )
        .values(read_attempts=attempts)
        .returning(col(InboundMessage.id))
    )
    return {row[0] for row in result}


def write_plans(
    session: Session,
    plans: Sequence[MessagePlan],
    *,
    claim_status: MessageStatus = MessageStatus.RECEIVED,
    actor: str = "system",
    context: dict[str, Any] | None = None,
    count_attempt: bool = True,
) -> list[MessagePlan]:
    """Write what the plans say; returns the plans handled (claimed and not deferred).

    A plan whose reading failed (`failure`) leaves its message `received`, the failure in
    its `error` column and a "read_failed" event: it is tried again alone (see isolation)."""
    claimed = claim(
        session, [p.message_id for p in plans], claim_status, count_attempt=count_attempt
    )
    plans = [p for p in plans if p.message_id in claimed]
    _record_failures(session, [p for p in plans if p.failure is not None], actor, context)
    plans = [p for p in plans if p.failure is None]
    resolve_cancels(session, plans, only_earlier=claim_status == MessageStatus.RECEIVED)
    done = [p for p in plans if not p.deferred]
    waiting = [p.message_id for p in plans if p.deferred]
    if waiting:  # not an attempt after all: they are read in a later round
        session.execute(
            update(InboundMessage)
            .where(col(InboundMessage.id).in_(waiting))
            .values(read_attempts=InboundMessage.read_attempts - 1)
        )
    good = [p for p in done if p.reason is None]
    now = utcnow()
    context = context or {}

    order_rows = [rows for p in good for rows in p.orders]
    ids: dict[tuple[int, int], int] = {}
    if order_rows:
        for rows in order_rows:
            rows.order["created_at"] = now
            rows.order["updated_at"] = now
        # Core multi-row inserts (no ORM bulk step per row). The new ids come back with their
        # (message_id, group_index), unique per order: no need to have them in parameter order,
        # which SQLite could only give one row per statement.
        result = session.execute(
            insert(_ORDERS).returning(_ORDERS.c.id, _ORDERS.c.message_id, _ORDERS.c.group_index),
            [rows.order for rows in order_rows],
        )
        ids = {(message_id, group): order_id for order_id, message_id, group in result}
        tests: list[dict[str, Any]] = []
        diagnoses: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        by_message = {p.message_id: p for p in good}
        for rows in order_rows:
            message_id, group = rows.order["message_id"], rows.order["group_index"]
            order_id = ids[(message_id, group)]
            tests += [{**t, "order_id": order_id} for t in rows.tests]
            diagnoses += [{**d, "order_id": order_id} for d in rows.diagnoses]
            detail = {
                "message_id": message_id,
                "control_id": by_message[message_id].control_id,
                "group_index": group,
                **context,
            }
            events.append(lifecycle.event_row(order_id, "received", detail, actor=actor, now=now))
        if tests:
            insert_rows(session.connection(), _TESTS, tests)
        if diagnoses:
            insert_rows(session.connection(), _DIAGNOSES, diagnoses)
        lifecycle.insert_events(session, events)

    _apply_cancels(session, good, ids, now)
    _finish_messages(session, done, now, actor, context)
    return done


def _record_failures(
    session: Session, plans: list[MessagePlan], actor: str, context: dict[str, Any] | None
) -> None:
    if not plans:
        return
    session.execute(
        update(_MESSAGES)
        .where(_MESSAGES.c.id == bindparam("message_id"))
        .values(error=bindparam("reason")),
        [{"message_id": p.message_id, "reason": p.failure} for p in plans],
    )
    session.execute(
        insert(_MESSAGE_EVENTS),
        [
            {
                "message_id": p.message_id,
                "at": utcnow(),
                "actor": actor,
                "action": "read_failed",
                "detail": {"reason": p.failure, **(context or {})},
            }
            for p in plans
        ],
    )


def _apply_cancels(
    session: Session, plans: list[MessagePlan], ids: dict[tuple[int, int], int], now: Any
) -> None:
    repeated: list[dict[str, Any]] = []
    cancels: dict[int, dict[str, Any]] = {}
    for plan in plans:
        for target in plan.targets:
            order_id = target.order_id
            previous = target.previous_status or OrderStatus.RECEIVED
            if target.batch_key is not None:
                order_id = ids[target.batch_key]
            assert order_id is not None
            detail = {
                "message_id": plan.message_id,
                "control_id": plan.control_id,
                "location": target.location,
                "previous_status": previous,
                "after_release": previous in RELEASED_STATUSES,
            }
            if target.repeated:
                repeated.append(
                    lifecycle.event_row(order_id, "cancel_repeated", detail, actor=PLACER, now=now)
                )
            else:
                cancels[order_id] = detail
    cancelled = lifecycle.transition_many(
        session,
        list(cancels),
        OrderStatus.CANCELLED,
        OrderEventKind.CANCELLED,
        actor=PLACER,
        detail=cancels,
        now=now,
    )
    lifecycle.insert_events(session, repeated)
    close_open_queries(session, cancelled, ClosedBecause.CANCELLED, actor=PLACER, now=now)


def _finish_messages(
    session: Session, plans: list[MessagePlan], now: Any, actor: str, context: dict[str, Any]
) -> None:
    read_ids = [p.message_id for p in plans if p.reason is None]
    if read_ids:
        session.execute(
            update(InboundMessage)
            .where(col(InboundMessage.id).in_(read_ids))
            .values(status=MessageStatus.READ, read_at=now, error=None)
        )
    failed = [p for p in plans if p.reason is not None]
    if failed:
        session.execute(
            update(_MESSAGES)
            .where(_MESSAGES.c.id == bindparam("message_id"))
            .values(status=MessageStatus.ERROR, read_at=now, error=bindparam("reason")),
            [{"message_id": p.message_id, "reason": p.reason} for p in failed],
        )
        session.execute(
            insert(_MESSAGE_EVENTS),
            [
                {
                    "message_id": p.message_id,
                    "at": now,
                    "actor": actor,
                    "action": "read_error",
                    "detail": {"reason": p.reason, **context},
                }
                for p in failed
            ],
        )
