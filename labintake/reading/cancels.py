"""ORC-1 CA: find the earlier order(s) a placer's cancel applies to.

A cancel names the sender facility (MSH-4) and the placer order number. It applies to every
earlier order (from an earlier message) with both, whatever its status; the orders of the
same batch count as earlier when their message came first. Outcomes:

- active orders found: each is cancelled (an OrderEvent "cancelled", actor "placer");
- only cancelled orders found: the cancel is a repeat, recorded on them, the message is read;
- nothing found while older messages are still unread (another worker may be reading the
  order right now): the message is left for the next batch;
- nothing found: the message is an error ("no earlier order ... to cancel").
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from labintake.models import InboundMessage, Order
from labintake.reading.plan import CancelTarget, MessagePlan
from labintake.statuses import MessageStatus, OrderStatus


def resolve_cancels(
    session: Session, plans: list[MessagePlan], *, only_earlier: bool = True
) -> None:
    """Fill each plan's cancel targets, or its error, or mark it deferred (in message order).

    `only_earlier=False` (reprocessing by hand) lets a cancel reach orders from later messages.
    """
    batch_ids = [p.message_id for p in plans]
    pending: dict[tuple[str, str], list[tuple[int, int]]] = {}
    cancelled_in_batch: set[tuple[int, int]] = set()
    cancelled_stored: set[int] = set()  # stored orders an earlier cancel of this batch took
    for plan in sorted(plans, key=lambda p: p.message_id):
        # Cancel outcomes are worked out afresh on every attempt (a refused batch is retried).
        plan.targets.clear()
        plan.cancel_error = None
        plan.deferred = False
        if plan.error is not None:
            continue
        claimed: set[tuple[int, int]] = set()
        claimed_stored: set[int] = set()
        for cancel in plan.cancels:
            key = (cancel.sending_facility, cancel.placer_order_number)
            targets: list[CancelTarget] = []
            for batch_key in pending.get(key, []):
                already = batch_key in cancelled_in_batch or batch_key in claimed
                claimed.add(batch_key)
                targets.append(
                    CancelTarget(
                        batch_key=batch_key,
                        previous_status=(
                            OrderStatus.CANCELLED.value if already else OrderStatus.RECEIVED.value
                        ),
                        repeated=already,
                        location=cancel.location,
                    )
                )
            query = select(col(Order.id), col(Order.status)).where(
                col(Order.sending_facility) == cancel.sending_facility,
                col(Order.placer_order_number) == cancel.placer_order_number,
            )
            if only_earlier:
                query = query.where(col(Order.message_id) < plan.message_id)
            for order_id, status in session.execute(query).all():
                if order_id in cancelled_stored or order_id in claimed_stored:
                    status = OrderStatus.CANCELLED.value
                claimed_stored.add(order_id)
                targets.append(
                    CancelTarget(
                        order_id=order_id,
                        previous_status=status,
                        repeated=status == OrderStatus.CANCELLED.value,
                        location=cancel.location,
                    )
                )
            if targets:
                plan.targets.extend(targets)
            elif only_earlier and _older_unread(session, plan.message_id, batch_ids):
                plan.deferred = True
                break
            else:
                plan.cancel_error = (
                    f"{cancel.location} CA: no earlier order with placer order number "
                    f"{cancel.placer_order_number!r} from {cancel.sending_facility!r} to cancel"
                )
                break
        if plan.cancel_error is not None or plan.deferred:
            plan.targets.clear()
            continue
        cancelled_in_batch |= claimed
        cancelled_stored |= claimed_stored
        for rows in plan.orders:
            order = rows.order
            key = (order["sending_facility"], order["placer_order_number"])
            pending.setdefault(key, []).append((plan.message_id, order["group_index"]))


def _older_unread(session: Session, message_id: int, batch_ids: list[int]) -> bool:
    """Is an older message still waiting to be read (outside this batch)?"""
    found = session.execute(
        select(col(InboundMessage.id))
        .where(
            col(InboundMessage.id) < message_id,
            col(InboundMessage.status) == MessageStatus.RECEIVED.value,
            col(InboundMessage.id).not_in(batch_ids),
        )
        .limit(1)
    ).first()
    return found is not None
