"""Internal notes on an order: what the lab's people tell each other about it. A note changes
nothing about the order (no row version, so no one's open page goes stale), is audited, and
never reaches the office or the LIS."""

from __future__ import annotations

from sqlmodel import Session, col, select

from labintake import audit
from labintake.errors import NotFoundError, WorkflowError
from labintake.models.orders import Order
from labintake.models.queue import OrderNote
from labintake.queue.contacts import plain_text

MAX_NOTE = 4000


def add_note(session: Session, order_id: int, author: str, text: str, via: str) -> OrderNote:
    body = plain_text(text, "the note")
    if not body:
        raise WorkflowError("write the note first", field="text")
    if len(body) > MAX_NOTE:
        raise WorkflowError(f"a note holds at most {MAX_NOTE} characters", field="text")
    if session.get(Order, order_id) is None:
        raise NotFoundError(f"no order {order_id}")
    note = OrderNote(order_id=order_id, author=author, text=body)
    session.add(note)
    session.flush()
    audit.record(session, author, "note_added", order_id=order_id, via=via, after={"note": note.id})
    session.commit()
    return note


def notes_for(session: Session, order_id: int) -> list[OrderNote]:
    return list(
        session.exec(
            select(OrderNote).where(OrderNote.order_id == order_id).order_by(col(OrderNote.id))
        )
    )
