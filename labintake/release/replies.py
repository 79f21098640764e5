"""Order responses to the placer (ORR^O02 for ORM senders, ORL^O22 for OML senders).

When an interface is listed in `Settings.placer_replies`, an order the lab rejects (ORC-1
``UA``, unable to accept) or the placer cancels (ORC-1 ``CR``, cancelled as requested)
gets a response through the outbox, delivered by a sender to that interface's address.
The message itself is built in :mod:`labintake.hl7.replies` (pure); here
`enqueue_placer_replies` finds the orders that need one and queues it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake import lifecycle
from labintake.db import session_scope, utcnow
from labintake.errors import ConfigurationError
from labintake.hl7.ack import new_control_id
from labintake.hl7.replies import ReplyFacts, build_reply
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order
from labintake.models.release import OutboxEntry, OutboxKind
from labintake.statuses import OrderStatus

REPLY_CONTROL: dict[str, str] = {OrderStatus.REJECTED: "UA", OrderStatus.CANCELLED: "CR"}
LOOKBACK = timedelta(days=7)


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"placer reply address must be host:port, not {value!r}")
    return host, int(port)


def _facts(order: Order, message: InboundMessage) -> ReplyFacts:
    reason = ""
    if isinstance(order.details, dict):
        reason = str(order.details.get("reject_reason", "")) or (order.error or "")
    return ReplyFacts(
        original_control_id=message.control_id,
        original_type=message.message_type,
        version=message.version,
        placer_application=message.sending_application,
        placer_facility=message.sending_facility,
        placer_order_number=order.placer_order_number,
        filler_order_number=f"LI{order.id}",
        patient_mrn=order.patient_mrn,
        order_control=REPLY_CONTROL[order.status],
        reason=reason,
    )


def enqueue_placer_replies(
    engine: Engine, destinations: dict[str, str], our_app: str = "LABINTAKE", limit: int = 200
) -> int:
    """Queue a response for each recently rejected or cancelled order whose interface wants
    one (`destinations`: interface name -> host:port) and has none yet. Idempotent."""
    if not destinations:
        return 0
    now = utcnow()
    has_reply = (
        select(OutboxEntry.id)
        .where(
            col(OutboxEntry.order_id) == col(Order.id),
            col(OutboxEntry.kind) == OutboxKind.REPLY,
        )
        .exists()
    )
    queued = 0
    with session_scope(engine) as session:
        rows = session.exec(
            select(Order, InboundMessage)
            .join(InboundMessage, col(InboundMessage.id) == col(Order.message_id))
            .where(
                col(Order.status).in_(list(REPLY_CONTROL)),
                col(Order.updated_at) >= now - LOOKBACK,
                col(InboundMessage.interface).in_(list(destinations)),
                ~has_reply,
            )
            .order_by(col(Order.id))
            .limit(limit)
        ).all()
        for order, message in rows:
            assert order.id is not None
            assert message.interface is not None
            control_id = new_control_id()
            facts = _facts(order, message)
            payload = build_reply(facts, control_id, now, our_app)
            session.add(
                OutboxEntry(
                    order_id=order.id,
                    kind=OutboxKind.REPLY,
                    destination=message.interface,
                    sequence_key=f"reply:{order.id}",
                    control_id=control_id,
                    message_type=payload.split(b"|", 9)[8].decode()[:7],
                    message=payload,
                    created_at=now,
                    updated_at=now,
                    next_attempt_at=now,
                )
            )
            lifecycle.record_event(
                session,
                order.id,
                "placer_reply_queued",
                {"control_id": control_id, "order_control": facts.order_control},
                now=now,
            )
            queued += 1
    return queued


def reply_destinations(session: Session) -> list[str]:
    """Interfaces that have replies waiting (for starting their senders)."""
    rows = session.exec(
        select(OutboxEntry.destination).where(col(OutboxEntry.kind) == OutboxKind.REPLY).distinct()
    ).all()
    return [str(r) for r in rows]
