"""Reading the messages that could hold everything up: alone, within a budget, a few times.

The batch reader (`labintake.reading.worker`) takes ordinary messages: no larger than
`isolated_read_bytes` and never failed. The isolated reader takes the rest, one at a time,
in a thread of its own that waits on a `ReadingSandbox`:

1. the attempt is counted in the database *before* reading (its own short transaction), so a
   read that kills the worker is counted too, also across restarts;
2. the message is read in the sandbox within `read_timeout_seconds`;
3. read: its orders are written as the batch reader would. Not read (the budget ran out,
   the reading process died, an internal error): the reason goes into the message's `error`
   column and a "read_failed" event, the message stays `received` for the next attempt;
   at the last of `read_attempts` attempts it is parked in the error queue with the reason.

A message whose count is already past `read_attempts` when taken (the worker died while
reading it each time) is parked without being read again.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError
from sqlmodel import Session, col

from labintake.models import InboundMessage
from labintake.reading.plan import MessagePlan
from labintake.reading.sandbox import ReadingSandbox, SandboxError, StoredMessage
from labintake.reading.writer import write_plans
from labintake.statuses import MessageStatus

log = logging.getLogger(__name__)


class IsolatedReader:
    """The batch function (`read_next`) of the isolated reader thread."""

    def __init__(
        self,
        engine: Engine,
        sandbox: ReadingSandbox,
        *,
        largest: int,
        budget_seconds: float,
        attempts: int,
    ) -> None:
        self.engine = engine
        self.sandbox = sandbox
        self.largest = largest
        self.budget_seconds = budget_seconds
        self.attempts = attempts

    def start(self) -> None:
        self.sandbox.start()

    def stop(self) -> None:
        self.sandbox.stop()

    def read_next(self) -> int:
        """Take one message and read it (or park it); 1 when one was taken, else 0."""
        taken = self._take()
        if taken is None:
            return 0
        message, attempt = taken
        if attempt > self.attempts:
            self._finish(
                MessagePlan(
                    message_id=message.message_id,
                    error=f"not read after {self.attempts} attempts: the worker stopped while "
                    "reading it each time; parked (LABINTAKE_READ_ATTEMPTS)",
                )
            )
            return 1
        try:
            plan: MessagePlan = self.sandbox.read(message, self.budget_seconds)
        except SandboxError as exc:
            plan = MessagePlan(message_id=message.message_id, failure=exc.reason)
        if plan.failure is not None:
            log.warning(
                "reading message %s failed (attempt %d of %d): %s",
                message.message_id,
                attempt,
                self.attempts,
                plan.failure,
            )
            if attempt >= self.attempts:
                plan = MessagePlan(
                    message_id=message.message_id,
                    error=f"not read after {attempt} attempts: {plan.failure}; parked "
                    "(LABINTAKE_READ_ATTEMPTS)",
                )
        self._finish(plan)
        return 1

    def _pending(self) -> Any:
        return (
            select(
                col(InboundMessage.id),
                col(InboundMessage.raw),
                col(InboundMessage.charset),
                col(InboundMessage.sending_application),
                col(InboundMessage.sending_facility),
            )
            .where(
                col(InboundMessage.status) == MessageStatus.RECEIVED,
                or_(
                    col(InboundMessage.read_attempts) > 0,
                    func.length(col(InboundMessage.raw)) > self.largest,
                ),
            )
            .order_by(col(InboundMessage.id))
            .limit(1)
        )

    def _take(self) -> tuple[StoredMessage, int] | None:
        """The next message for this reader, its attempt counted and committed."""
        query = self._pending()
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with Session(self.engine) as session, session.begin():
            row = session.execute(query).first()
            if row is None:
                return None
            attempt = session.execute(
                update(InboundMessage)
                .where(
                    col(InboundMessage.id) == row.id,
                    col(InboundMessage.status) == MessageStatus.RECEIVED,
                )
                .values(read_attempts=InboundMessage.read_attempts + 1)
                .returning(col(InboundMessage.read_attempts))
            ).scalar_one_or_none()
            if attempt is None:  # taken by someone else meanwhile
                return None
        message = StoredMessage(
            message_id=int(row.id),
            raw=row.raw,
            charset=row.charset or "",
            sending_application=row.sending_application or "",
            sending_facility=row.sending_facility or "",
        )
        return message, int(attempt)

    def _finish(self, plan: MessagePlan) -> None:
        try:
            with Session(self.engine) as session, session.begin():
                write_plans(session, [plan], count_attempt=False, context={"isolated": True})
        except (IntegrityError, DataError, ProgrammingError) as exc:
            reason = f"storage refused the orders: {type(exc.orig).__name__}: {exc.orig}"
            failed = MessagePlan(message_id=plan.message_id, error=reason[:2000])
            with Session(self.engine) as session, session.begin():
                write_plans(session, [failed], count_attempt=False, context={"isolated": True})
