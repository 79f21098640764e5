"""Test data for release tests: received messages and orders written with the models."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from labintake.db import session_scope, utcnow
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order, OrderDiagnosis, OrderTest
from labintake.statuses import MessageStatus, OrderStatus

_counter = itertools.count(1)

TESTS = (
    ("LIPID", "Lipid panel", "24331-1", "80061"),
    ("A1C", "Hemoglobin A1c", "4548-4", "83036"),
    ("TSH", "Thyroid stimulating hormone", "3016-3", "84443"),
)


def add_order(
    session: Session,
    *,
    status: str = OrderStatus.VERIFIED.value,
    mrn: str | None = None,
    facility: str = "NORTHCLINIC",
    office: str = "North Clinic",
    tests: int = 2,
    received_at: datetime | None = None,
    modifiers: str = "",
) -> Order:
    """One synthetic order (with its inbound message) in `status`; flushed, not committed."""
    n = next(_counter)
    at = received_at or utcnow()
    message = InboundMessage(
        received_at=at,
        sending_application="EHR",
        sending_facility=facility,
        control_id=f"MSG{n:08d}",
        message_type="ORM^O01",
        version="2.5.1",
        raw=b"MSH|^~\\&|EHR|" + facility.encode() + b"|||",
        ack_code="AA",
        ack=b"MSA|AA",
        status=MessageStatus.READ.value,
    )
    session.add(message)
    session.flush()
    assert message.id is not None
    order = Order(
        message_id=message.id,
        group_index=0,
        status=status,
        sending_application="EHR",
        sending_facility=facility,
        placer_order_number=f"PO{n:06d}",
        patient_mrn=mrn if mrn is not None else f"MRN{n:06d}",
        patient_family_name="Testpatient",
        patient_given_name=f"Synthetic{n}",
        patient_birth_date=date(1955, 3, 14),
        patient_sex="F",
        payer_company_id="MCR",
        payer_company_name="Medicare Part B",
        provider_npi="1234567893",
        provider_family_name="Example",
        provider_given_name="Pat",
        office_name=office,
        date_of_service=at.date(),
        ordered_at=at,
        created_at=at,
        updated_at=at,
        verified_at=at + timedelta(minutes=1) if status == OrderStatus.VERIFIED.value else None,
    )
    session.add(order)
    session.flush()
    assert order.id is not None
    for seq, (code, text, loinc, cpt) in enumerate(TESTS[:tests], start=1):
        session.add(
            OrderTest(
                order_id=order.id,
                seq=seq,
                sent_code=code,
                sent_text=text,
                local_code=code,
                loinc=loinc,
                cpt=cpt,
                modifiers=modifiers,
            )
        )
    session.add(OrderDiagnosis(order_id=order.id, seq=1, code="E78.5", text="Hyperlipidemia"))
    session.add(OrderDiagnosis(order_id=order.id, seq=2, code="E11.9", text="Type 2 diabetes"))
    session.add(
        OrderDiagnosis(order_id=order.id, seq=3, code="R99", text="Ill-defined", active=False)
    )
    session.flush()
    return order


def make_orders(engine: Engine, count: int, **kwargs: object) -> list[int]:
    """`count` orders committed; returns their ids."""
    ids: list[int] = []
    with session_scope(engine) as session:
        for _ in range(count):
            order = add_order(session, **kwargs)  # type: ignore[arg-type]
            assert order.id is not None
            ids.append(order.id)
    return ids


def received_on(day: date, hour: int = 9) -> datetime:
    from datetime import UTC

    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
