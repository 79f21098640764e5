"""Finding orders in any status (the API's `GET /api/orders`), newest first, keyset pages."""

from __future__ import annotations

from sqlmodel import Session, col, select

from labintake.errors import NotFoundError, WorkflowError
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order
from labintake.queue.listing import search_ids
from labintake.statuses import OrderStatus

MAX_LIMIT = 500


def _cursor(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 10 or int(value) > 2**31 - 1:
        raise WorkflowError("cursor must be the next_cursor of a previous page")
    return int(value)


def find_orders(
    session: Session,
    *,
    status: str = "",
    control_id: str = "",
    placer_order: str = "",
    patient: str = "",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Order], str | None]:
    if status and status not in set(OrderStatus):
        raise WorkflowError(f"unknown status {status!r}")
    limit = max(1, min(limit, MAX_LIMIT))
    statement = select(Order)
    if status:
        statement = statement.where(Order.status == status)
    if control_id:
        ids = select(InboundMessage.id).where(InboundMessage.control_id == control_id)
        statement = statement.where(col(Order.message_id).in_(ids))
    if placer_order:
        statement = statement.where(Order.placer_order_number == placer_order)
    if patient:
        statement = statement.where(
            col(Order.id).in_(search_ids(session, patient, queue_only=False))
        )
    after = _cursor(cursor)
    if after is not None:
        statement = statement.where(col(Order.id) < after)
    rows = list(session.exec(statement.order_by(col(Order.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (str(rows[-1].id) if more and rows else None)


def load_order(session: Session, order_id: int) -> Order:
    """The order, or NotFoundError."""
    order = session.get(Order, order_id)
    if order is None:
        raise NotFoundError(f"no order {order_id}")
    return order
