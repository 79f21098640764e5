"""Releasing the orders the rules verified, in bulk (run by the scheduler's release worker).

The same rows as `labintake.release.outbox.enqueue_release` writes for one order, written
set-based: orders, tests and diagnoses read in three queries, messages built outside any
write transaction, then each chunk claimed and written in one short transaction. Reads and
writes are plain Core statements on the tables, no ORM objects: loading and flushing
thousands of them was over a third of the stage's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlmodel import Session

from labintake import lifecycle
from labintake.db import chunked, session_scope, utcnow, write_chunk
from labintake.hl7.ack import new_control_id
from labintake.hl7.order_builder import LisProfile, build_order_message
from labintake.lifecycle import OrderEventKind
from labintake.models.release import OutboxEntry, OutboxKind, OutboxStatus
from labintake.models.tables import Bound, bind, insert_bound, table_of
from labintake.queue.open_queries import ClosedBecause, close_open_queries
from labintake.release.outbox import (
    LIS_DESTINATION,
    ORDER_COLUMNS,
    ORDERS,
    TESTS,
    active_profile,
    outbound_order,
    part_rows_by_order,
    sequence_key,
)
from labintake.statuses import SUPERSEDABLE, OrderStatus

OUTBOX = table_of(OutboxEntry)

# Modifiers written back to the tests, by primary key, as one executemany.
_SET_MODIFIERS = (
    update(TESTS)
    .where(TESTS.c.id == bindparam("test_id"))
    .values(modifiers=bindparam("test_modifiers"))
)


@dataclass(frozen=True, slots=True)
class _BoundChunk:
    """A chunk's events and outbox rows, bound before its transaction (`tables.Bound`), each
    owned by its order id."""

    now: datetime
    events: Bound
    outbox: Bound


def _bind_chunk(
    dialect: Dialect, prepared: Sequence[_Prepared], profile: LisProfile, now: datetime
) -> _BoundChunk:
    events = lifecycle.bind_events(
        dialect,
        {
            p.order_id: {
                "before": {"status": OrderStatus.VERIFIED},
                "after": {"status": OrderStatus.RELEASED},
                "control_id": p.control_id,
                "message_type": profile.message_type,
                "modifiers": p.modifiers,
            }
            for p in prepared
        },
        OrderEventKind.RELEASED,
        now=now,
    )
    outbox = bind(
        dialect,
        OUTBOX,
        [
            {
                "order_id": p.order_id,
                "kind": OutboxKind.RELEASE,
                "destination": LIS_DESTINATION,
                "sequence_key": p.sequence_key,
                "control_id": p.control_id,
                "message_type": profile.message_type,
                "message": p.message,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "ack_code": "",
                "created_by": "system",
                "created_at": now,
                "updated_at": now,
                "next_attempt_at": now,
            }
            for p in prepared
        ],
        owners=[p.order_id for p in prepared],
    )
    return _BoundChunk(now, events, outbox)


def _release_chunk(session: Session, prepared: Sequence[_Prepared], bound: _BoundChunk) -> int:
    """One transaction's worth of releases, set-based: claim the orders still verified at
    the row_version read (others changed meanwhile or were taken by another instance and
    are skipped), supersede their older outbound messages, write outbox rows and history."""
    now = bound.now
    by_id = {p.order_id: p for p in prepared}
    claimed = lifecycle.transition_many(
        session,
        list(by_id),
        OrderStatus.RELEASED,
        OrderEventKind.RELEASED,
        events=bound.events,
        sources=[OrderStatus.VERIFIED],
        versions={p.order_id: p.row_version for p in prepared},
        values={"released_at": now, "delivered_at": None},
        now=now,
    )
    if not claimed:
        return 0
    conn = session.connection()
    _supersede(conn, claimed, now)
    rows = [by_id[i] for i in claimed]
    changed = [
        {"test_id": test_id, "test_modifiers": modifiers}
        for p in rows
        for test_id, modifiers in p.modifier_updates
    ]
    if changed:  # by primary key, one executemany
        conn.execute(_SET_MODIFIERS, changed)
    kept = set(claimed)
    insert_bound(conn, bound.outbox.only(kept.__contains__))
    close_open_queries(session, claimed, ClosedBecause.RELEASED, now=now)
    return len(rows)


def _supersede(conn: Connection, order_ids: Sequence[int], now: datetime) -> None:
    """Supersede the orders' older release messages still waiting to go.

    Found by order id (ix_outbox_order_id), their status checked here, then updated by
    primary key. With the status in the same WHERE, SQLite's planner, which has no
    statistics, walks ix_outbox_due (status, next_attempt_at) instead: every pending message
    of the outbox, for each chunk, holding the write lock. During an outage of the LIS
    that is all of the backlog (100,000 pending: 64 ms a chunk instead of under one).
    PostgreSQL locks the rows read (`FOR UPDATE`) so a sender cannot change one meanwhile."""
    found = conn.execute(
        select(OUTBOX.c.id, OUTBOX.c.status)
        .where(OUTBOX.c.order_id.in_(order_ids), OUTBOX.c.kind == OutboxKind.RELEASE)
        .with_for_update()
    ).all()
    older = [entry_id for entry_id, status in found if status in SUPERSEDABLE]
    if older:
        conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id.in_(older))
            .values(status=OutboxStatus.SUPERSEDED, claimed_by=None, updated_at=now)
        )


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A verified order read, with its outbound message built, ready to be written."""

    order_id: int
    row_version: int
    sequence_key: str
    control_id: str
    message: bytes
    modifiers: list[str]
    modifier_updates: tuple[tuple[int, str], ...]


def _releasable() -> Any:
    """Verified, and no order of the same message still waits to be verified: the orders of
    one message (one requisition) are verified together, and none leaves before the rest
    has been looked at."""
    sibling = ORDERS.alias("sibling")
    waiting = (
        select(sibling.c.id)
        .where(
            sibling.c.message_id == ORDERS.c.message_id,
            sibling.c.status == OrderStatus.RECEIVED,
        )
        .exists()
    )
    return and_(ORDERS.c.status == OrderStatus.VERIFIED, ~waiting)


def has_verified(engine: Engine) -> bool:
    """Whether any order waits to be released (a read; no lease needed to ask)."""
    with engine.connect() as conn:
        found = conn.execute(select(ORDERS.c.id).where(_releasable()).limit(1)).first()
    return found is not None


def release_verified(
    engine: Engine,
    limit: int = 500,
    *,
    profile: LisProfile | None = None,
    chunk: int | None = None,
) -> int:
    """Move up to `limit` verified orders to released + outbox; returns how many moved.

    The orders and their tests and diagnoses are read in three queries, the messages built
    outside any write transaction, then each `chunk` (default: `write_chunk`) is written
    set-based in one short transaction that re-checks every order's row_version, so an order
    changed meanwhile (or taken by another instance) is skipped.
    """
    profile = profile or active_profile()
    prepared: list[_Prepared] = []
    with Session(engine) as session:
        # Only the columns the outbound message carries: the order's `details` (the
        # reading's facts, JSON) and `error` are not read.
        orders = (
            session.connection()
            .execute(select(*ORDER_COLUMNS).where(_releasable()).order_by(ORDERS.c.id).limit(limit))
            .all()
        )
        tests, diagnoses = part_rows_by_order(session, [o.id for o in orders])
        now = utcnow()
        for order in orders:
            outbound = outbound_order(order, tests[order.id], diagnoses[order.id])
            control_id = new_control_id()
            sent = {t.seq: ",".join(t.modifiers) for t in outbound.tests}
            prepared.append(
                _Prepared(
                    order_id=order.id,
                    row_version=order.row_version,
                    sequence_key=sequence_key(order),
                    control_id=control_id,
                    message=build_order_message(outbound, profile, control_id, now),
                    modifiers=sorted({m for t in outbound.tests for m in t.modifiers}),
                    modifier_updates=tuple(
                        (t.id, sent[t.seq])
                        for t in tests[order.id]
                        if t.id is not None and t.seq in sent and sent[t.seq] != t.modifiers
                    ),
                )
            )
    moved = 0
    for part in chunked(prepared, chunk or write_chunk(engine)):
        bound = _bind_chunk(engine.dialect, part, profile, utcnow())  # before the lock
        with session_scope(engine) as session:
            moved += _release_chunk(session, part, bound)
    return moved
