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

from sqlalchemy import select
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Session, col

from labintake.interfaces import InterfaceRegistry
from labintake.models import InboundMessage
from labintake.reading.plan import MessagePlan, plan_message
from labintake.reading.writer import write_plans
from labintake.statuses import MessageStatus

log = logging.getLogger(__name__)

_COLUMNS = (
    col(InboundMessage.id),
    col(InboundMessage.raw),
    col(InboundMessage.charset),
    col(InboundMessage.sending_application),
    col(InboundMessage.sending_facility),
)


def _plans(rows: list[Row[Any]], registry: InterfaceRegistry) -> list[MessagePlan]:
    return [
        plan_message(
            int(row.id),
            row.raw,
            row.charset or "",
            row.sending_application or "",
            row.sending_facility or "",
            registry,
        )
        for row in rows
    ]


def _pending(limit: int) -> Any:
    return (
        select(*_COLUMNS)
        .where(col(InboundMessage.status) == MessageStatus.RECEIVED.value)
        .order_by(col(InboundMessage.id))
        .limit(limit)
    )


def read_pending(engine: Engine, registry: InterfaceRegistry, limit: int = 500) -> int:
    """Read one batch of received messages into orders; returns how many messages it settled."""
    if engine.dialect.name == "postgresql":
        try:
            with Session(engine) as session, session.begin():
                rows = list(session.execute(_pending(limit).with_for_update(skip_locked=True)))
                if not rows:
                    return 0
                plans = _plans(rows, registry)
                return len(write_plans(session, plans))
        except (IntegrityError, DataError, ProgrammingError):
            log.warning("batch of %d could not be written; writing one by one", len(rows))
            return _one_by_one(engine, _plans(rows, registry))
    with engine.connect() as connection:
        rows = list(connection.execute(_pending(limit)))
    if not rows:
        return 0
    plans = _plans(rows, registry)
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


def read_until_empty(engine: Engine, registry: InterfaceRegistry, limit: int = 500) -> int:
    """Drain the backlog: batches until one settles nothing. Returns the messages settled."""
    total = 0
    while True:
        count = read_pending(engine, registry, limit)
        if count == 0:
            return total
        total += count
