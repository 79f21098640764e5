"""What reading one stored message will write: its new orders, its cancels, or its error.

Making the plan is pure work on values (decode, read, build rows), done before any write so
the write transaction stays short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labintake.errors import OrderReadError
from labintake.hl7.charset import decode_message
from labintake.hl7.limits import ReadingLimits
from labintake.hl7.reader import CANCEL, ReadResult, read_orders
from labintake.interfaces import InterfaceRegistry
from labintake.reading.rows import ColumnLimits, OrderRows, order_rows

if TYPE_CHECKING:
    from labintake.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """An ORC-1 CA group: cancel the earlier order(s) with this placer number from this sender,
    for this patient."""

    sending_facility: str
    placer_order_number: str
    location: str  # "ORC[1]-1"
    sending_application: str = ""
    patient_mrn: str = ""


@dataclass(frozen=True, slots=True)
class CancelTarget:
    """An order a cancel applies to: already stored (`order_id`) or new in this batch."""

    order_id: int | None = None
    previous_status: str = ""
    batch_key: tuple[int, int] | None = None  # (message_id, group_index)
    repeated: bool = False  # the order was cancelled already
    location: str = ""


@dataclass(slots=True)
class MessagePlan:
    message_id: int
    control_id: str = ""
    sending_facility: str = ""
    orders: list[OrderRows] = field(default_factory=list)
    cancels: list[CancelRequest] = field(default_factory=list)
    targets: list[CancelTarget] = field(default_factory=list)
    error: str | None = None  # the message could not be read
    # Reading failed in a way a later attempt may not repeat (an internal error, a time
    # budget overrun): the message stays `received` and is tried again in isolation.
    failure: str | None = None
    cancel_error: str | None = None  # a cancel found no order (set anew on every attempt)
    deferred: bool = False  # a cancel whose order may still be in an unread message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as a plain tuple of its fields (the sandbox sends every plan over a pipe):
        a slotted dataclass pickles through a state dict built field by field."""
        return (
            MessagePlan,
            (
                self.message_id,
                self.control_id,
                self.sending_facility,
                self.orders,
                self.cancels,
                self.targets,
                self.error,
                self.failure,
                self.cancel_error,
                self.deferred,
            ),
        )

    @property
    def reason(self) -> str | None:
        """Why the message goes to `error`, or None when it is read."""
        return self.error or self.cancel_error


def reading_limits(settings: Settings) -> ReadingLimits:
    return ReadingLimits(
        orders_per_message=settings.max_orders_per_message,
        tests_per_order=settings.max_tests_per_order,
        notes_per_order=settings.max_notes_per_order,
        diagnoses_per_order=settings.max_diagnoses_per_order,
        field_repetitions=settings.max_field_repetitions,
    )


def error_reason(exc: OrderReadError) -> str:
    """The reason stored for an unreadable message: the text, led by its location if missing."""
    if exc.location and exc.location not in exc.text:
        return f"{exc.location}: {exc.text}"
    return exc.text


def plan_message(
    message_id: int,
    raw: bytes | None,
    charset: str,
    sending_application: str,
    sending_facility: str,
    registry: InterfaceRegistry,
    limits: ReadingLimits | None = None,
    columns: ColumnLimits | None = None,
) -> MessagePlan:
    """Decode and read one stored message into what must be written for it (within `limits`,
    the defaults when not given; text cut to `columns`, the models' limits when not given)."""
    plan = MessagePlan(message_id=message_id)
    if raw is None:
        plan.error = "the raw message was purged: nothing left to read"
        return plan
    decoded = decode_message(raw, charset)
    result: ReadResult
    try:
        result = read_orders(decoded.text, limits=limits or ReadingLimits())
    except OrderReadError as exc:
        plan.error = error_reason(exc)
        return plan
    except Exception as exc:  # a reader bug must not hold up the batch: tried again alone
        log.exception("internal error reading message %s", message_id)
        plan.failure = f"internal error while reading: {type(exc).__name__}: {exc}"[:2000]
        return plan
    header = result.header
    plan.control_id = header.control_id
    plan.sending_facility = header.sending_facility
    interface = registry.find(
        header.sending_application or sending_application,
        header.sending_facility or sending_facility,
    )
    for order in result.orders:
        if order.order_control == CANCEL:
            plan.cancels.append(
                CancelRequest(
                    sending_facility=header.sending_facility,
                    placer_order_number=order.placer_order_number,
                    location=_orc_location(order.extras),
                    sending_application=header.sending_application,
                    patient_mrn=order.patient.mrn,
                )
            )
        else:
            plan.orders.append(
                order_rows(message_id, header, order, interface, decoded.note, columns)
            )
    return plan


def _orc_location(extras: tuple[tuple[str, str], ...]) -> str:
    """Where the group's ORC-1 sits (the reader lists it first among the extras)."""
    return next((key for key, _ in extras if key.startswith("ORC[")), "ORC-1")
