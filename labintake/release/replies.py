"""Order responses to the placer (ORR^O02 for ORM senders, ORL^O22 for OML senders).

When an interface is listed in `Settings.placer_replies`, an order the lab rejects (ORC-1
``UA``, unable to accept) or the placer cancels (ORC-1 ``CR``, cancelled as requested)
gets a response through the outbox, delivered by a sender to that interface's address.
The building is pure; `enqueue_placer_replies` finds the orders that need one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hl7apy import get_default_encoding_chars
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake import lifecycle
from labintake.db import session_scope, utcnow
from labintake.errors import ConfigurationError
from labintake.hl7.ack import new_control_id
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order
from labintake.models.release import OutboxEntry, OutboxKind
from labintake.release.escaping import esc, escapes_for
from labintake.statuses import OrderStatus

REPLY_CONTROL: dict[str, str] = {OrderStatus.REJECTED: "UA", OrderStatus.CANCELLED: "CR"}
LOOKBACK = timedelta(days=7)
# MSH-2: the version's default encoding characters (from v2.7 with the truncation "#").
_MSH2_ORDER = ("COMPONENT", "REPETITION", "ESCAPE", "SUBCOMPONENT", "TRUNCATION")


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
    """ORR^O02 (to an ORM sender) or ORL^O22 (to an OML sender), as ER7 bytes.

    Written straight to ER7, each value escaped once (:mod:`labintake.release.escaping`):
    hl7apy escapes the backslashes of ``\\Xhh\\`` sequences again on output, so a reason
    with a line break reached the placer as ``\\E\\X0D\\E\\``. The segments are those
    hl7apy writes for both structures: MSH, MSA, NTE (the reason), PID, ORC.
    """
    if facts.original_type.startswith("OML"):
        message_type, structure = "ORL^O22", "ORL_O22"
    else:
        message_type, structure = "ORR^O02", "ORR_O02"
    version = facts.version or "2.5.1"
    table = escapes_for(version)
    defaults = get_default_encoding_chars(version)
    encoding = "".join(defaults.get(key, "") for key in _MSH2_ORDER)
    segments = [
        [
            "MSH",
            encoding,
            esc(our_app, table),
            "",
            esc(facts.placer_application, table),
            esc(facts.placer_facility, table),
            now.strftime("%Y%m%d%H%M%S+0000"),
            "",
            f"{message_type}^{structure}",
            esc(control_id, table),
            "P",
            version,
        ],
        ["MSA", "AA", esc(facts.original_control_id, table)],
    ]
    if facts.reason:
        segments.append(["NTE", "", "", esc(facts.reason, table)])
    segments.append(["PID", "1", "", esc(facts.patient_mrn, table)])
    placer = [
        esc(facts.placer_order_number, table),
        esc(facts.placer_facility.split("^", 1)[0], table),
    ]
    segments.append(
        [
            "ORC",
            facts.order_control,
            "^".join(placer).rstrip("^"),
            esc(facts.filler_order_number, table),
        ]
    )
    text = "\r".join("|".join(fields).rstrip("|") for fields in segments)
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
