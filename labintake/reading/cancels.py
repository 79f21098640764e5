"""ORC-1 CA: find the earlier order(s) a placer's cancel applies to.

A cancel names the sending application and facility (MSH-3, MSH-4), the placer order number
and the patient (PID-3, as the MRN the reader takes from it). It applies to every earlier
order (from an earlier message) with all four, whatever its status; the orders of the same
batch count as earlier when their message came first. Applications compare by their
namespace id, case-blind, as interfaces do. Outcomes:

- active orders found: each is cancelled (an OrderEvent "cancelled", actor "placer");
- orders with that facility and placer number found, but none from the same application and
  patient: the message is an error naming what differs, and nothing is cancelled (a cancel
  from another system, or with a guessed placer number, must not take someone's order);
- only cancelled orders found: the cancel is a repeat, recorded on them, the message is read;
- nothing found while older messages are still unread (another worker may be reading the
  order right now): the message is left for the next batch;
- nothing found: the message is an error ("no earlier order ... to cancel").
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlmodel import Session, col

from labintake.models import InboundMessage, Order
from labintake.reading.plan import CancelRequest, CancelTarget, MessagePlan
from labintake.statuses import MessageStatus, OrderStatus


def resolve_cancels(
    session: Session, plans: list[MessagePlan], *, only_earlier: bool = True
) -> None:
    """Fill each plan's cancel targets, or its error, or mark it deferred (in message order).

    `only_earlier=False` (reprocessing by hand) lets a cancel reach orders from later messages.
    """
    batch_ids = [p.message_id for p in plans]
    # (facility, placer number) -> (message id, group index), application, patient MRN
    pending: dict[tuple[str, str], list[tuple[tuple[int, int], str, str]]] = {}
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
            mismatches: list[tuple[str, str]] = []
            for batch_key, application, mrn in pending.get(key, []):
                if not _same_placer(cancel, application, mrn):
                    mismatches.append((application, mrn))
                    continue
                already = batch_key in cancelled_in_batch or batch_key in claimed
                claimed.add(batch_key)
                targets.append(
                    CancelTarget(
                        batch_key=batch_key,
                        previous_status=(
                            OrderStatus.CANCELLED if already else OrderStatus.RECEIVED
                        ),
                        repeated=already,
                        location=cancel.location,
                    )
                )
            query = select(
                col(Order.id),
                col(Order.status),
                col(Order.sending_application),
                col(Order.patient_mrn),
            ).where(
                col(Order.sending_facility) == cancel.sending_facility,
                col(Order.placer_order_number) == cancel.placer_order_number,
            )
            if only_earlier:
                query = query.where(col(Order.message_id) < plan.message_id)
            for order_id, status, application, mrn in session.execute(query).all():
                if not _same_placer(cancel, application, mrn):
                    mismatches.append((application, mrn))
                    continue
                if order_id in cancelled_stored or order_id in claimed_stored:
                    status = OrderStatus.CANCELLED
                claimed_stored.add(order_id)
                targets.append(
                    CancelTarget(
                        order_id=order_id,
                        previous_status=status,
                        repeated=status == OrderStatus.CANCELLED,
                        location=cancel.location,
                    )
                )
            if targets:
                plan.targets.extend(targets)
            elif mismatches:
                plan.cancel_error = _mismatch_reason(cancel, mismatches)
                break
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
            pending.setdefault(key, []).append(
                (
                    (plan.message_id, order["group_index"]),
                    order["sending_application"],
                    order["patient_mrn"],
                )
            )


def _namespace(application: str) -> str:
    return application.split("^", 1)[0].strip().upper()


def _same_placer(cancel: CancelRequest, application: str, mrn: str) -> bool:
    """Whether an order with the cancel's facility and placer number is the cancel's order."""
    return _namespace(application) == _namespace(cancel.sending_application) and (
        mrn.strip() == cancel.patient_mrn.strip()
    )


def _mismatch_reason(cancel: CancelRequest, orders: Iterable[tuple[str, str]]) -> str:
    """Why no order was cancelled: what differs between the cancel and the order(s) found.

    Patient identifiers are not repeated in the reason (it is shown on the error queue)."""
    differs: list[str] = []
    found = list(orders)
    if all(_namespace(a) != _namespace(cancel.sending_application) for a, _ in found):
        names = ", ".join(sorted({_namespace(a) for a, _ in found}))
        differs.append(
            f"sending application {_namespace(cancel.sending_application)!r} is not the "
            f"order's ({names})"
        )
    if all(m.strip() != cancel.patient_mrn.strip() for _, m in found):
        differs.append("the patient (PID-3) is not the order's")
    if not differs:
        differs.append("no single order matches both the sending application and the patient")
    return (
        f"{cancel.location} CA: order(s) with placer order number "
        f"{cancel.placer_order_number!r} from {cancel.sending_facility!r} found, but "
        + "; ".join(differs)
        + ": nothing cancelled"
    )


def _older_unread(session: Session, message_id: int, batch_ids: list[int]) -> bool:
    """Is an older message still waiting to be read (outside this batch)?"""
    found = session.execute(
        select(col(InboundMessage.id))
        .where(
            col(InboundMessage.id) < message_id,
            col(InboundMessage.status) == MessageStatus.RECEIVED,
            col(InboundMessage.id).not_in(batch_ids),
        )
        .limit(1)
    ).first()
    return found is not None
