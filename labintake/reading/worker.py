"""The reading worker: drains received messages into orders, one batch per call.

PostgreSQL: the batch is claimed with `SELECT ... FOR UPDATE SKIP LOCKED` and read and written
in that transaction, so several instances can drain side by side. SQLite has one writer: the
batch is selected in a short read, read into rows outside any transaction, then written in
one short transaction whose first statement claims the messages (so intake commits are not
held up while messages are being read).

With a `ReadingSandbox` (as `labintake serve` runs it), the batch is read in that process of
its own, each message within `budget_seconds` (`BATCH_READ_TIMEOUT_SECONDS`): a message
nobody foresaw that would read for ever (a reader bug) cannot hold up reading, verification
and release, which share the pipeline thread. Such a message gets its failure counted (it
stays `received`, and from now on only the isolated reader takes it, alone, within
`READ_TIMEOUT_SECONDS`: see `labintake.reading.isolation`); the messages read before it are
written, those after it wait for the next batch. Without a sandbox (tests, tools) the batch
is read in this thread.

If a batch cannot be written (a value the database refuses), each message is retried alone
and the one that still fails is set to `error` with the database's reason; a lost connection
or a locked database is raised for the caller to retry later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Session, col

from labintake.db import WRITE_CHUNK, chunked
from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import InterfaceRegistry
from labintake.models import InboundMessage
from labintake.reading.plan import MessagePlan, plan_message
from labintake.reading.sandbox import ReadingSandbox, StoredMessage
from labintake.reading.writer import bind_plans, write_plans
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


class BatchReading:
    """How a batch is read: in this thread, or in a sandbox within a budget per message."""

    def __init__(
        self,
        registry: InterfaceRegistry,
        limits: ReadingLimits,
        sandbox: ReadingSandbox | None = None,
        budget_seconds: float = 5.0,
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.sandbox = sandbox
        self.budget_seconds = budget_seconds

    def plans(self, rows: list[Row[Any]]) -> list[MessagePlan]:
        """The plans of `rows` in order; in a sandbox, up to and including the first message
        that did not come back within the budget (a failure plan), none after it."""
        if self.sandbox is None:
            return _plans(rows, self.registry, self.limits)
        messages = [
            StoredMessage(
                message_id=int(row.id),
                raw=row.raw,
                charset=row.charset or "",
                sending_application=row.sending_application or "",
                sending_facility=row.sending_facility or "",
            )
            for row in rows
        ]
        plans, error = self.sandbox.read_batch(
            messages, self.budget_seconds, "BATCH_READ_TIMEOUT_SECONDS"
        )
        if error is None:
            return list(plans)
        culprit = messages[len(plans)].message_id
        log.warning(
            "reading message %s in the batch failed: %s; it will be read alone",
            culprit,
            error.reason,
        )
        return [*plans, MessagePlan(message_id=culprit, failure=error.reason)]


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
    reading: BatchReading | None = None,
) -> int:
    """Read one batch of received messages into orders; returns how many messages it settled.

    Messages larger than `largest` bytes, and those whose reading failed before, are left to
    the isolated reader. `reading`: how (default: in this thread, with `limits`)."""
    reading = reading or BatchReading(registry, limits or ReadingLimits())
    if engine.dialect.name == "postgresql":
        plans: list[MessagePlan] = []
        try:
            with Session(engine) as session, session.begin():
                query = _pending(limit, largest).with_for_update(skip_locked=True)
                rows = list(session.execute(query))
                if not rows:
                    return 0
                plans = reading.plans(rows)
                return len(write_plans(session, plans))
        except (IntegrityError, DataError, ProgrammingError):
            log.warning("batch of %d could not be written; writing one by one", len(plans))
            return _one_by_one(engine, plans)
    with engine.connect() as connection:
        rows = list(connection.execute(_pending(limit, largest)))
    if not rows:
        return 0
    plans = reading.plans(rows)
    handled = 0
    for chunk in chunked(plans, WRITE_CHUNK):  # each a short hold of the write lock
        bound = bind_plans(engine.dialect, chunk)  # before the lock is taken
        try:
            with Session(engine) as session, session.begin():
                handled += len(write_plans(session, chunk, bound=bound))
        except (IntegrityError, DataError, ProgrammingError):
            log.warning("batch of %d could not be written; writing one by one", len(chunk))
            handled += _one_by_one(engine, chunk)
    return handled


def _one_by_one(engine: Engine, plans: Sequence[MessagePlan]) -> int:
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
