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

Several instances on one database each run an isolated reader. A message is read by one of
them at a time: before counting the attempt, the reader takes the message's lease
(`labintake.jobs.lease`, a `job_lease` row named ``isolated-read:<id>``, one conditional
write), and it drops the lease once the outcome is written. The lease lasts longer than a
read can (the reading process's start-up, plus the time budget, plus a margin for the
database writes), so it never expires under a reader that is still at work; the lease of an
instance that died mid-read expires, and another instance then takes the message over, the
attempt it lost counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError
from sqlmodel import Session, col

from labintake.jobs import lease
from labintake.models import InboundMessage
from labintake.reading.plan import MessagePlan
from labintake.reading.sandbox import STARTUP_SECONDS, ReadingSandbox, SandboxError, StoredMessage
from labintake.reading.writer import write_plans
from labintake.statuses import MessageStatus
from labintake.verification.aside import MessagesAside

log = logging.getLogger(__name__)

# Messages looked at per take: those leased by other instances (one each at most) are passed.
CANDIDATES = 20
# Beyond the start-up of the reading process and the time budget: the writes of the outcome.
LEASE_MARGIN_SECONDS = 60.0


def lease_name(message_id: int) -> str:
    return f"isolated-read:{message_id}"


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
        owner: str | None = None,
        lease_seconds: float | None = None,
        verify: Callable[[int], int] | None = None,
        aside: MessagesAside | None = None,
    ) -> None:
        """`owner`: this instance's name in the leases (unique per process by default).
        `verify(message_id)`: verify a message's orders once they are written, in this
        thread. Each message is set `aside` from when it is taken until then (the pipeline's
        verifier shares that set: `labintake.verification.aside`; a set of its own if none)."""
        from labintake.jobs.scheduler import instance_owner

        self.engine = engine
        self.sandbox = sandbox
        self.largest = largest
        self.budget_seconds = budget_seconds
        self.attempts = attempts
        self.owner = owner or instance_owner()
        self.lease_seconds = lease_seconds or (
            STARTUP_SECONDS + budget_seconds + LEASE_MARGIN_SECONDS
        )
        self.verify = verify
        self.aside = aside if aside is not None else MessagesAside()

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
        message_id = message.message_id
        with self.aside.holding(message_id):
            try:
                read = self._read(message, attempt)
            finally:
                lease.drop(self.engine, lease_name(message_id), self.owner)
            if read and self.verify is not None:
                try:
                    self.verify(message_id)
                except Exception:  # the pipeline verifies what is left
                    log.exception("verifying the orders of message %s failed", message_id)
        return 1

    def _read(self, message: StoredMessage, attempt: int) -> bool:
        """Whether the message was read into orders."""
        if attempt > self.attempts:
            return self._finish(
                MessagePlan(
                    message_id=message.message_id,
                    error=f"not read after {self.attempts} attempts: the worker stopped while "
                    "reading it each time; parked (LABINTAKE_READ_ATTEMPTS)",
                )
            )
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
        return self._finish(plan)

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
            .limit(CANDIDATES)
        )

    def _take(self) -> tuple[StoredMessage, int] | None:
        """The next message for this reader, under its lease, its attempt counted and
        committed (None when there is none, or every one is another instance's)."""
        with Session(self.engine) as session:
            rows = list(session.execute(self._pending()))
        for row in rows:
            name = lease_name(int(row.id))
            if not lease.acquire(self.engine, name, self.owner, self.lease_seconds, renew=False):
                continue  # another reader is at it
            attempt = self._count_attempt(int(row.id))
            if attempt is None:  # read (or parked) meanwhile
                lease.drop(self.engine, name, self.owner)
                continue
            message = StoredMessage(
                message_id=int(row.id),
                raw=row.raw,
                charset=row.charset or "",
                sending_application=row.sending_application or "",
                sending_facility=row.sending_facility or "",
            )
            return message, attempt
        return None

    def _count_attempt(self, message_id: int) -> int | None:
        with Session(self.engine) as session, session.begin():
            attempt = session.execute(
                update(InboundMessage)
                .where(
                    col(InboundMessage.id) == message_id,
                    col(InboundMessage.status) == MessageStatus.RECEIVED,
                )
                .values(read_attempts=InboundMessage.read_attempts + 1)
                .returning(col(InboundMessage.read_attempts))
            ).scalar_one_or_none()
        return None if attempt is None else int(attempt)

    def _finish(self, plan: MessagePlan) -> bool:
        """Write the outcome; whether it wrote orders."""
        try:
            with Session(self.engine) as session, session.begin():
                write_plans(session, [plan], count_attempt=False, context={"isolated": True})
        except (IntegrityError, DataError, ProgrammingError) as exc:
            reason = f"storage refused the orders: {type(exc.orig).__name__}: {exc.orig}"
            failed = MessagePlan(message_id=plan.message_id, error=reason[:2000])
            with Session(self.engine) as session, session.begin():
                write_plans(session, [failed], count_attempt=False, context={"isolated": True})
            return False
        return bool(plan.orders) and plan.error is None and plan.failure is None
