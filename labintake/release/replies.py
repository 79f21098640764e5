"""Order responses to the placer (ORR^O02 for ORM senders, ORL^O22 for OML senders).

When an interface is listed in `Settings.placer_replies`, an order the lab rejects (ORC-1
``UA``, unable to accept) or the placer cancels (ORC-1 ``CR``, cancelled as requested)
gets a response through the outbox, delivered by a sender to that interface's address.
The building is pure (hl7apy); `enqueue_placer_replies` finds the orders that need one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.db import session_scope, utcnow
from labintake.errors import ConfigurationError
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order, OrderEvent
from labintake.models.release import OutboxEntry, OutboxKind
from labintake.release.builder import esc
from labintake.release.outbox import new_control_id
from labintake.statuses import OrderStatus

REPLY_CONTROL = {OrderStatus.REJECTED.value: "UA", OrderStatus.CANCELLED.value: "CR"}
LOOKBACK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ReplyFacts:
    original_control_id: str
    original_type: str  # ORM^O01 | OML^O21
    version: str
    placer_application: str
    placer_facility: str
    placer_order_number: str
    filler_order_number: str
    patient_mrn: str
    order_control: str  # UA | CR
    reason: str


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"placer reply address must be host:port, not {value!r}")
    return host, int(port)


def build_reply(facts: ReplyFacts, control_id: str, now: datetime, our_app: str) -> bytes:
    """ORR^O02 (to an ORM sender) or ORL^O22 (to an OML sender), as ER7 bytes."""
    if facts.original_type.startswith("OML"):
        message_type, structure = "ORL^O22", "ORL_O22"
    else:
        message_type, structure = "ORR^O02", "ORR_O02"
    version = facts.version or "2.5.1"
    message = Message(structure, version=version, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = message.msh
    msh.msh_3 = esc(our_app)
    msh.msh_5 = esc(facts.placer_application)
    msh.msh_6 = esc(facts.placer_facility)
    msh.msh_7 = now.strftime("%Y%m%d%H%M%S+0000")
    msh.msh_9 = f"{message_type}^{structure}"
    msh.msh_10 = esc(control_id)
    msh.msh_11 = "P"
    msh.msh_12 = version
    msa = message.add_segment("MSA")
    msa.msa_1 = "AA"
    msa.msa_2 = esc(facts.original_control_id)
    if facts.reason:
        message.add_segment("NTE").nte_3 = esc(facts.reason)
    response = message.add_group(f"{structure}_RESPONSE")
    patient = response.add_group(f"{structure}_PATIENT")
    pid = patient.add_segment("PID")
    pid.pid_1 = "1"
    if facts.patient_mrn:
        pid.pid_3 = esc(facts.patient_mrn)
    order_parent = patient if structure == "ORL_O22" else response
    order = order_parent.add_group(f"{structure}_ORDER")
    orc = order.add_segment("ORC")
    orc.orc_1 = facts.order_control
    placer = [esc(facts.placer_order_number), esc(facts.placer_facility.split("^", 1)[0])]
    orc.orc_2 = "^".join(placer).rstrip("^")
    orc.orc_3 = esc(facts.filler_order_number)
    text: str = message.to_er7()
    return (text + "\r").encode("utf-8")


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
            col(OutboxEntry.kind) == OutboxKind.REPLY.value,
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
                    kind=OutboxKind.REPLY.value,
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
            session.add(
                OrderEvent(
                    order_id=order.id,
                    at=now,
                    action="placer_reply_queued",
                    detail={"control_id": control_id, "order_control": facts.order_control},
                )
            )
            queued += 1
    return queued


def reply_destinations(session: Session) -> list[str]:
    """Interfaces that have replies waiting (for starting their senders)."""
    rows = session.exec(
        select(OutboxEntry.destination)
        .where(col(OutboxEntry.kind) == OutboxKind.REPLY.value)
        .distinct()
    ).all()
    return [str(r) for r in rows]
