"""What intake kept but refused for security reasons, for the managers' error screen.

Two kinds, both stored with status ``rejected`` (so the look-up rides the status index):
control-id conflicts (a later message that reused a stored control id with other content)
and sender-binding refusals (a message whose connection did not prove its MSH-3/MSH-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from labintake.models.messages import InboundMessage
from labintake.statuses import MessageStatus

UNPROVEN_PREFIX = "unproven:"


@dataclass(frozen=True, slots=True)
class IntakeRefusal:
    message_id: int
    received_at: datetime
    kind: str  # "conflict" | "sender binding"
    sending_application: str
    sending_facility: str
    control_id: str
    peer: str
    ack_code: str
    reason: str
    conflict_of_id: int | None


def _refused() -> list[object]:
    return [
        col(InboundMessage.status) == MessageStatus.REJECTED,
        or_(
            col(InboundMessage.conflict_digest) != "",
            col(InboundMessage.sender_identity).startswith(UNPROVEN_PREFIX),
        ),
    ]


def intake_refusals(engine: Engine, limit: int = 50) -> tuple[int, list[IntakeRefusal]]:
    """How many there are, and the latest `limit` of them, newest first."""
    with Session(engine) as session:
        total = session.execute(
            select(func.count()).select_from(InboundMessage).where(*_refused())  # type: ignore[arg-type]
        ).scalar_one()
        rows = session.execute(
            select(InboundMessage)
            .where(*_refused())  # type: ignore[arg-type]
            .order_by(col(InboundMessage.id).desc())
            .limit(limit)
        ).scalars()
        refusals = [
            IntakeRefusal(
                message_id=m.id or 0,
                received_at=m.received_at,
                kind="conflict" if m.conflict_digest else "sender binding",
                sending_application=m.sending_application,
                sending_facility=m.sending_facility,
                control_id=m.control_id,
                peer=m.peer,
                ack_code=m.ack_code,
                reason=m.error or "",
                conflict_of_id=m.conflict_of_id,
            )
            for m in rows
        ]
    return int(total), refusals
