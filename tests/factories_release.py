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


OFFICES = (
    ("NORTHCLINIC", "North Clinic"),
    ("RIVERSIDE", "Riverside Family Medicine"),
    ("LAKEVIEW", "Lakeview Internal Medicine"),
    ("HILLCREST", "Hillcrest Pediatrics"),
)
HOLD_REASONS = (
    ("DX_MISSING", 5),
    ("NECESSITY_NOT_SUPPORTED", 4),
    ("DX_NOT_BILLABLE", 3),
    ("SCREENING_ON_DIAGNOSTIC", 2),
    ("PROVIDER_NPI_INVALID", 1),
)


def seed_busy_day(engine: Engine, now: datetime | None = None) -> None:
    """A plausible day at a lab: orders through every stage over 24 hours, holds with reasons,
    open queries, a few failing deliveries and a dead letter (synthetic, deterministic)."""
    import random

    from labintake.models.orders import Finding, Verification
    from labintake.models.queue import OfficeQuery
    from labintake.models.release import OutboxEntry

    rng = random.Random(7)
    now = now or utcnow()
    with session_scope(engine) as session:

        def outbox(order: Order, status: str, attempts: int = 1, error: str | None = None) -> None:
            assert order.id is not None
            session.add(
                OutboxEntry(
                    order_id=order.id,
                    sequence_key=f"{order.sending_facility}|{order.patient_mrn}",
                    control_id=f"LIDEMO{order.id:08d}",
                    message_type="ORM^O01",
                    message=b"MSH|^~\\&|LABINTAKE|LAB|LIS|LAB",
                    status=status,
                    attempts=attempts,
                    ack_code="AA" if status == "delivered" else "",
                    last_error=error,
                    created_at=order.released_at or now,
                    delivered_at=order.delivered_at,
                    dead_at=now - timedelta(minutes=20) if status == "dead" else None,
                )
            )

        for hours_ago in range(23, -1, -1):
            busy = 14 if 8 <= (now - timedelta(hours=hours_ago)).hour <= 17 else 4
            for _ in range(busy + rng.randint(0, 4)):
                at = now - timedelta(hours=hours_ago, minutes=rng.randint(0, 59))
                facility, office = rng.choice(OFFICES)
                order = add_order(
                    session, status="delivered", facility=facility, office=office, received_at=at
                )
                released = at + timedelta(minutes=rng.choice((2, 3, 5, 8, 12, 25, 40, 95)))
                if released > now:
                    order.status = "verified"
                    session.add(order)
                    continue
                order.released_at = released
                order.delivered_at = released + timedelta(seconds=rng.randint(1, 40))
                if order.delivered_at > now:
                    order.status = "released"
                    order.delivered_at = None
                    outbox(order, "pending", 0)
                else:
                    outbox(order, "delivered")
                session.add(order)
        for reason, count in HOLD_REASONS:
            for _ in range(count):
                facility, office = rng.choice(OFFICES[:3])
                at = now - timedelta(hours=rng.choice((1, 3, 6, 20, 30, 50, 80, 200)))
                status = rng.choice(("held", "awaiting_office"))
                order = add_order(
                    session, status=status, facility=facility, office=office, received_at=at
                )
                assert order.id is not None
                verification = Verification(order_id=order.id, at=at, outcome="held")
                session.add(verification)
                session.flush()
                assert verification.id is not None
                session.add(
                    Finding(
                        order_id=order.id,
                        verification_id=verification.id,
                        code=reason,
                        severity="hold",
                        message=reason,
                    )
                )
                if status == "held" and rng.random() < 0.6:  # an office that did answer
                    session.add(
                        OfficeQuery(
                            order_id=order.id,
                            actor="coder1",
                            created_at=now - timedelta(hours=rng.randint(3, 20)),
                            closed_at=now - timedelta(hours=rng.randint(0, 2)),
                            status="answered",
                            question="Please give the reason for the test.",
                        )
                    )
                if status == "awaiting_office":
                    session.add(
                        OfficeQuery(
                            order_id=order.id,
                            actor="coder1",
                            created_at=at + timedelta(minutes=30),
                            question="What is the reason for the test?",
                        )
                    )
        for error, status, attempts in (
            ("cannot connect to lis.example:2576: connection refused", "pending", 3),
            ("no acknowledgement within 30 s", "pending", 1),
            ("cannot connect to lis.example:2576: connection refused", "dead", 20),
        ):
            order = add_order(session, status="released", received_at=now - timedelta(hours=2))
            order.released_at = now - timedelta(hours=1, minutes=50)
            session.add(order)
            outbox(order, status, attempts, error)
