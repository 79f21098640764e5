"""The error queue: messages that could not be read, listed and read again after a fix.

Reprocessing keeps the context: the message's earlier error goes into a `MessageEvent`
("reprocessed", who, the earlier error, the outcome) and into the "received" event of every
order it now produces; if it fails again, the new reason replaces the old one on the message
and both stay in its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from labintake.db import utcnow
from labintake.errors import NotFoundError, WorkflowError
from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import InterfaceRegistry
from labintake.models import InboundMessage, MessageEvent, Order
from labintake.reading.plan import plan_message
from labintake.reading.writer import write_plans
from labintake.statuses import MessageStatus


@dataclass(frozen=True, slots=True)
class QueuedError:
    """One message in the error queue."""

    message_id: int
    received_at: datetime
    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    error: str
    read_attempts: int


@dataclass(frozen=True, slots=True)
class ReprocessOutcome:
    message_id: int
    status: MessageStatus  # read or error
    error: str | None  # the new reason when it failed again
    previous_error: str | None
    order_ids: tuple[int, ...]
    cancelled_order_ids: tuple[int, ...]


def error_queue(engine: Engine, limit: int = 100, after_id: int = 0) -> list[QueuedError]:
    """Messages in status `error`, oldest first (page with `after_id`)."""
    with Session(engine) as session:
        rows = session.execute(
            select(InboundMessage)
            .where(
                col(InboundMessage.status) == MessageStatus.ERROR,
                col(InboundMessage.id) > after_id,
            )
            .order_by(col(InboundMessage.id))
            .limit(limit)
        ).scalars()
        return [
            QueuedError(
                message_id=m.id or 0,
                received_at=m.received_at,
                sending_application=m.sending_application,
                sending_facility=m.sending_facility,
                control_id=m.control_id,
                message_type=m.message_type,
                error=m.error or "",
                read_attempts=m.read_attempts,
            )
            for m in rows
        ]


def count_errors(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(InboundMessage)
                .where(col(InboundMessage.status) == MessageStatus.ERROR)
            ).scalar_one()
        )


def reprocess_message(
    engine: Engine,
    registry: InterfaceRegistry,
    message_id: int,
    actor: str,
    limits: ReadingLimits | None = None,
) -> ReprocessOutcome:
    """Read a message in status `error` again (after a fix to the reader or its interface)."""
    # Read first, write after: the write transaction starts with the claim (SQLite has one
    # writer, and a read transaction cannot safely turn into a write one there).
    with Session(engine) as session:
        message = session.get(InboundMessage, message_id)
        if message is None:
            raise NotFoundError(f"no message {message_id}")
        if message.status != MessageStatus.ERROR:
            raise WorkflowError(
                f"message {message_id} is {message.status!r}: only messages in error are "
                "reprocessed"
            )
        previous = message.error
        plan = plan_message(
            message_id,
            message.raw,
            message.charset,
            message.sending_application,
            message.sending_facility,
            registry,
            limits,
        )
        if plan.failure is not None:  # a person asked: no retries, the reason at once
            plan.error, plan.failure = plan.failure, None
    with Session(engine) as session, session.begin():
        context = {"reprocessed_by": actor, "previous_error": previous}
        done = write_plans(
            session, [plan], claim_status=MessageStatus.ERROR, actor=actor, context=context
        )
        if not done:
            raise WorkflowError(f"message {message_id} was taken by someone else meanwhile")
        order_ids = tuple(
            session.execute(
                select(col(Order.id))
                .where(col(Order.message_id) == message_id)
                .order_by(col(Order.id))
            ).scalars()
        )
        cancelled = tuple(t.order_id for t in plan.targets if t.order_id is not None)
        status = MessageStatus.READ if plan.reason is None else MessageStatus.ERROR
        session.execute(
            insert(MessageEvent),
            [
                {
                    "message_id": message_id,
                    "at": utcnow(),
                    "actor": actor,
                    "action": "reprocessed",
                    "detail": {
                        "previous_error": previous,
                        "outcome": status,
                        "error": plan.reason,
                        "order_ids": list(order_ids),
                        "cancelled_order_ids": list(cancelled),
                    },
                }
            ],
        )
    return ReprocessOutcome(
        message_id=message_id,
        status=status,
        error=plan.reason,
        previous_error=previous,
        order_ids=order_ids,
        cancelled_order_ids=cancelled,
    )
