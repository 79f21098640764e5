"""The write of one batch of read messages: orders, tests, diagnoses, events, message statuses.

All in the caller's transaction, in a handful of multi-row statements (the backlog drain
depends on it). The first statement claims the messages (`status` still as expected), so a
message another worker or a person got to first is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Dialect
from sqlmodel import Session

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
from labintake.models.orders import first_action_due
from labintake.models.tables import Bound, bind, insert_bound, insert_bound_returning, table_of
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
_EVENTS = lifecycle.EVENTS


@dataclass(frozen=True, slots=True)
class BoundPlans:
    """The new orders of a batch of plans, with their tests, diagnoses and "received" events,
    as the driver's parameters (`labintake.models.tables.Bound`), each row owned by its
    order's (message id, group index) and its order id filled in once the orders are in."""

    now: datetime
    orders: Bound
    tests: Bound
    diagnoses: Bound
    events: Bound


def bind_plans(
    dialect: Dialect,
    plans: Sequence[MessagePlan],
    *,
    actor: str = "system",
    context: dict[str, Any] | None = None,
) -> BoundPlans:
    """Bind every order the plans may write, before the write transaction: on SQLite the
    binding then no longer holds the write lock that intake's commits wait for. Which of them
    are written is decided in the transaction (claimed, not deferred, no error)."""
    now = utcnow()
    stamps = {"created_at": now, "updated_at": now, "due_at": first_action_due(now)}
    orders: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    diagnoses: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    owners: dict[str, list[tuple[int, int]]] = {"o": [], "t": [], "d": [], "e": []}
    for plan in plans:
        for rows in plan.orders:
            owner = (plan.message_id, rows.order["group_index"])
            orders.append({**rows.order, **stamps})
            owners["o"].append(owner)
            tests += rows.tests
            owners["t"] += [owner] * len(rows.tests)
            diagnoses += rows.diagnoses
            owners["d"] += [owner] * len(rows.diagnoses)
            detail = {
                "message_id": plan.message_id,
                "control_id": plan.control_id,
                "group_index": owner[1],
                **(context or {}),
            }
            events.append(lifecycle.event_row(0, "received", detail, actor=actor, now=now))
            owners["e"].append(owner)
    later = ("order_id",)
    return BoundPlans(
        now=now,
        orders=bind(dialect, _ORDERS, orders, owners["o"]),
        tests=bind(dialect, _TESTS, tests, owners["t"], later),
        diagnoses=bind(dialect, _DIAGNOSES, diagnoses, owners["d"], later),
        events=bind(dialect, _EVENTS, events, owners["e"]),
    )


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
    # On the table, not the mapped class: the ORM would look for the rows in the session to
    # update them there too, inside the transaction.
    attempts = _MESSAGES.c.read_attempts + (1 if count_attempt else 0)
    result = session.execute(
        update(_MESSAGES)
        .where(_MESSAGES.c.id.in_(message_ids), _MESSAGES.c.status == status)
        .values(read_attempts=attempts)
        .returning(_MESSAGES.c.id)
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
    bound: BoundPlans | None = None,
) -> list[MessagePlan]:
    """Write what the plans say; returns the plans handled (claimed and not deferred).

    A plan whose reading failed (`failure`) leaves its message `received`, the failure in
    its `error` column and a "read_failed" event: it is tried again alone (see isolation).
    `bound`: the plans' rows as `bind_plans` made them before the transaction (bound here
    when not given)."""
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
            update(_MESSAGES)
            .where(_MESSAGES.c.id.in_(waiting))
            .values(read_attempts=_MESSAGES.c.read_attempts - 1)
        )
    good = [p for p in done if p.reason is None]
    context = context or {}
    if bound is None:
        bound = bind_plans(session.connection().dialect, plans, actor=actor, context=context)
    now = bound.now

    written = {p.message_id for p in good}

    def mine(owner: tuple[int, int]) -> bool:
        return owner[0] in written

    connection = session.connection()
    # Multi-row inserts of rows bound before (no ORM, no Core binding here). The new ids come
    # back with their (message_id, group_index), unique per order: no need to have them in
    # the rows' order, which SQLite could only give one row per statement.
    returned = insert_bound_returning(
        connection, bound.orders.only(mine), ("id", "message_id", "group_index")
    )
    ids: dict[tuple[int, int], int] = {(m, g): order_id for order_id, m, g in returned}
    for part in (bound.tests, bound.diagnoses):
        rows = part.only(mine)
        rows.fill("order_id", ids.__getitem__)
        insert_bound(connection, rows)
    events = bound.events.only(mine)
    events.fill("order_id", ids.__getitem__)
    insert_bound(connection, events)  # the first events of the transaction: ids in order

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
            update(_MESSAGES)
            .where(_MESSAGES.c.id.in_(read_ids))
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
