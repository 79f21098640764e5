"""The reading worker: drains received messages into orders, one batch per call.

PostgreSQL: the batch is claimed with `SELECT ... FOR UPDATE SKIP LOCKED` and read and written
in that transaction, so several instances can drain side by side. SQLite has one writer: the
batch is selected in a short read, read into rows outside any transaction, then written in
one short transaction whose first statement claims the messages (so intake commits are not
held up while messages are being read).

If a batch cannot be written (a value the database refuses), each message is retried alone
and the one that still fails is set to `error` with the database's reason; a lost connection
or a locked database is raised for the caller to retry later.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Session, col

from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import InterfaceRegistry
from labintake.models import InboundMessage
from labintake.reading.plan import MessagePlan, plan_message
from labintake.reading.writer import write_plans
from labintake.statuses import MessageStatus

log = logging.getLogger(__name__)

# Messages up to this size are read in batches, in the worker's own thread: the reader is
# linear in a message's size (docs/limits.md), so one costs at most some tens of
# milliseconds. Larger ones are read one at a time in a process of their own.
ISOLATED_READ_BYTES = 64 * 1024

_COLUMNS = (
    col(InboundMessage.id),
    col(InboundMessage.raw),
    col(InboundMessage.charset),
    col(InboundMessage.sending_application),
    col(InboundMessage.sending_facility),
)


def _plans(
    rows: list[Row[Any]], registry: InterfaceRegistry, limits: ReadingLimits
) -> list[MessagePlan]:
    return [
        plan_message(
            int(row.id),
            row.raw,
            row.charset or "",
            row.sending_application or "",
            row.sending_facility or "",
            registry,
            limits,
        )
        for row in rows
    ]


def _pending(limit: int, largest: int) -> Any:
    """The next batch: received, never failed, and no larger than `largest` bytes (the others
    are read alone, see `labintake.reading.isolation`)."""
    return (
        select(*_COLUMNS)
        .where(
            col(InboundMessage.status) == MessageStatus.RECEIVED,
            col(InboundMessage.read_attempts) == 0,
            or_(
                col(InboundMessage.raw).is_(None),
                func.length(col(InboundMessage.raw)) <= largest,
            ),
        )
        .order_by(col(InboundMessage.id))
        .limit(limit)
    )


def read_pending(
    engine: Engine,
    registry: InterfaceRegistry,
    limit: int = 500,
    *,
    limits: ReadingLimits | None = None,
    largest: int = ISOLATED_READ_BYTES,
) -> int:
    """Read one batch of received messages into orders; returns how many messages it settled.

    Messages larger than `largest` bytes, and those whose reading failed before, are left to
    the isolated reader."""
    limits = limits or ReadingLimits()
    if engine.dialect.name == "postgresql":
        try:
            with Session(engine) as session, session.begin():
                query = _pending(limit, largest).with_for_update(skip_locked=True)
                rows = list(session.execute(query))
                if not rows:
                    return 0
                plans = _plans(rows, registry, limits)
                return len(write_plans(session, plans))
        except (IntegrityError, DataError, ProgrammingError):
            log.warning("batch of %d could not be written; writing one by one", len(rows))
            return _one_by_one(engine, _plans(rows, registry, limits))
    with engine.connect() as connection:
        rows = list(connection.execute(_pending(limit, largest)))
    if not rows:
        return 0
    plans = _plans(rows, registry, limits)
    try:
        with Session(engine) as session, session.begin():
            return len(write_plans(session, plans))
    except (IntegrityError, DataError, ProgrammingError):
        log.warning("batch of %d could not be written; writing one by one", len(plans))
        return _one_by_one(engine, plans)


def _one_by_one(engine: Engine, plans: list[MessagePlan]) -> int:
    handled = 0
    for plan in plans:
        try:
            with Session(engine) as session, session.begin():
                handled += len(write_plans(session, [plan]))
        except OperationalError:
            raise
        except (IntegrityError, DataError, ProgrammingError) as exc:
            reason = f"storage refused the orders: {type(exc.orig).__name__}: {exc.orig}"
            failed = MessagePlan(message_id=plan.message_id, error=reason[:2000])
            with Session(engine) as session, session.begin():
                handled += len(write_plans(session, [failed]))
    return handled


def read_until_empty(
    engine: Engine,
    registry: InterfaceRegistry,
    limit: int = 500,
    *,
    limits: ReadingLimits | None = None,
    largest: int = ISOLATED_READ_BYTES,
) -> int:
    """Drain the batch backlog: batches until one settles nothing. Returns the messages
    settled (large and failed messages are the isolated reader's)."""
    total = 0
    while True:
        count = read_pending(engine, registry, limit, limits=limits, largest=largest)
        if count == 0:
            return total
        total += count
