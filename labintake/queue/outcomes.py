"""What happened to an order a coder has left or is about to leave, told in words: released
by someone else, released by the rules once its last hold was resolved, or still waiting for
the release worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from labintake.models.orders import Order, OrderEvent
from labintake.queue.service import ALREADY_RELEASED
from labintake.statuses import RELEASED_STATUSES, OrderStatus

# Actors that release without a person: the release worker and replays.
RULE_ACTORS = frozenset({"system", "verifier", "replay"})
MAX_ORDER_ID = 2**63 - 1
# A correction that left no open hold: the release worker sends the order to the lab by
# itself, so the coder moves on to the next order, told so.
HOLDS_CLEARED = "cleared"
# The outcomes told by a note on the order that went (or is going) to the lab.
RELEASE_NOTES = (ALREADY_RELEASED, HOLDS_CLEARED)


@dataclass(frozen=True, slots=True)
class ReleaseNote:
    order_id: int
    patient: str
    at: datetime | None  # None: verified, the release worker has not taken it yet
    by: str | None  # None: released by the rules once its last hold was resolved

    @property
    def pending(self) -> bool:
        return self.at is None


def release_note(session: Session, order_id: str) -> ReleaseNote | None:
    """Whether the order (an id from a link) went to the lab, who released it and when, or
    whether it still waits for the release worker; None when it is neither (not found, back
    in the queue, rejected...)."""
    if not order_id.isdigit() or int(order_id) > MAX_ORDER_ID:
        return None
    order = session.get(Order, int(order_id))
    if order is None or order.id is None:
        return None
    patient = ", ".join(p for p in (order.patient_family_name, order.patient_given_name) if p)
    if order.status == OrderStatus.VERIFIED:
        return ReleaseNote(order.id, patient, None, None)
    if order.status not in RELEASED_STATUSES or order.released_at is None:
        return None
    event = session.exec(
        select(OrderEvent)
        .where(OrderEvent.order_id == order.id, OrderEvent.action == "released")
        .order_by(col(OrderEvent.id).desc())
        .limit(1)
    ).first()
    by = None if event is None or event.actor in RULE_ACTORS else event.actor
    return ReleaseNote(order.id, patient, order.released_at, by)
