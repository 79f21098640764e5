"""What happened to an order while a coder had it open, told in words for the next page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from labintake.models.orders import Order, OrderEvent

# Actors that release without a person: the release worker and replays.
RULE_ACTORS = frozenset({"system", "verifier", "replay"})
MAX_ORDER_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ReleasedMeanwhile:
    order_id: int
    patient: str
    at: datetime
    by: str | None  # None: released by the rules once its last hold was resolved


def released_note(session: Session, order_id: str) -> ReleasedMeanwhile | None:
    """Who released the order a coder was about to release, and when; None if it was not."""
    if not order_id.isdigit() or int(order_id) > MAX_ORDER_ID:
        return None
    order = session.get(Order, int(order_id))
    if order is None or order.id is None or order.released_at is None:
        return None
    event = session.exec(
        select(OrderEvent)
        .where(OrderEvent.order_id == order.id, OrderEvent.action == "released")
        .order_by(col(OrderEvent.id).desc())
        .limit(1)
    ).first()
    by = None if event is None or event.actor in RULE_ACTORS else event.actor
    patient = ", ".join(p for p in (order.patient_family_name, order.patient_given_name) if p)
    return ReleasedMeanwhile(order.id, patient, order.released_at, by)
