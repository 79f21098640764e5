"""Stored orders as the reader leaves them, for the verification service and replay tests."""

from __future__ import annotations

from datetime import date

from sqlalchemy.engine import Engine

from labintake.db import session_scope
from labintake.models import InboundMessage, Order, OrderDiagnosis, OrderTest
from labintake.statuses import OrderStatus
from labintake.verification.beneficiary import stored_patient_key

DOS = date(2026, 5, 12)
NPI = "1234567893"
_counter = iter(range(1, 1_000_000))


def store_order(
    engine: Engine,
    tests: list[tuple[str, str]],
    dx: list[str],
    *,
    mrn: str = "MRN1",
    status: str = OrderStatus.RECEIVED.value,
    dos: date = DOS,
    payer: str = "Medicare Part B",
    npi: str = NPI,
    insurances: list[dict[str, str]] | None = None,
    facility: str = "PRAIRIEFM",
    identifiers: list[str] | None = None,
) -> int:
    """A stored order as the reader leaves it: tests as sent, diagnoses, status received."""
    n = next(_counter)
    with session_scope(engine) as session:
        message = InboundMessage(control_id=f"C{n}-{id(engine)}", ack=b"", status="read")
        session.add(message)
        session.flush()
        assert message.id is not None
        details = {
            "interface": "prairie-clinic",
            "provider": {"location": "ORC[1]-12"},
            **({"insurances": insurances} if insurances is not None else {}),
            **({"patient_identifiers": identifiers} if identifiers is not None else {}),
        }
        order = Order(
            message_id=message.id,
            group_index=1,
            status=status,
            sending_application="PRAXIS",
            sending_facility=facility,
            placer_order_number=f"P{n}",
            patient_mrn=mrn,
            payer_company_id="CMS" if "Medicare" in payer else "ACME",
            payer_company_name=payer,
            provider_npi=npi,
            provider_family_name="Whitfield",
            provider_given_name="Dana",
            date_of_service=dos,
            details=details,
            beneficiary_key=stored_patient_key(details, facility, mrn),
        )
        session.add(order)
        session.flush()
        assert order.id is not None
        for seq, (code, system) in enumerate(tests, start=1):
            session.add(
                OrderTest(
                    order_id=order.id,
                    seq=seq,
                    location=f"OBR[{seq}]-4",
                    sent_code=code,
                    sent_system=system,
                    cpt=code if system == "CPT" else None,
                )
            )
        for seq, code in enumerate(dx, start=1):
            session.add(
                OrderDiagnosis(order_id=order.id, seq=seq, code=code, location=f"DG1[{seq}]-3")
            )
        return order.id
