"""Corrections that cannot make an order worse, and a release that was already done.

A diagnosis correction is refused unless the code is complete and billable in the ICD-10-CM
release used for the order's date of service; a diagnosis can be removed and an NPI corrected,
each citing the office's answer; pressing Release on an order the worker released meanwhile
says so instead of reporting a conflict.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.errors import WorkflowError
from labintake.models.orders import Order, OrderDiagnosis, OrderEvent
from labintake.queue.contacts import ContactChannel, ContactInput, ContactOutcome
from labintake.queue.outcomes import release_note
from labintake.queue.service import ALREADY_RELEASED, Actor, ClarificationQueue
from labintake.release.bulk import release_verified
from labintake.statuses import OrderStatus
from tests.factories import OrderSpec, held_order

ANN = Actor("ann", Role.CODER, "web")
ANSWER = ContactInput(
    ContactChannel.PHONE,
    ContactOutcome.ANSWERED,
    answer="Dr Whitfield: type 2 diabetes without complications.",
    person="Pat at the front desk",
)


def _version(engine: Engine, order_id: int) -> int:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.row_version


def _answered(engine: Engine, settings: Settings, order_id: int) -> int:
    with Session(engine) as session:
        _, contact = ClarificationQueue(session, settings).record_contact(
            ANN, order_id, _version(engine, order_id), ANSWER
        )
        assert contact is not None
        assert contact.id is not None
        return contact.id


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("E11.999", "E11.999 is not a code of the ICD-10-CM release used for the date of service"),
        ("E11", "E11 (Type 2 diabetes mellitus) is a heading, not a complete code"),
        ("T36.0X1", "needs its 7th character"),
        ("11.9", "11.9 is not an ICD-10-CM code"),
    ],
)
def test_a_correction_to_a_code_that_is_not_complete_and_billable_is_refused(
    engine: Engine, settings: Settings, typed: str, reason: str
) -> None:
    order_id = held_order(engine, settings)
    contact_id = _answered(engine, settings, order_id)
    version = _version(engine, order_id)
    refusal = pytest.raises(WorkflowError, match=re.escape(reason))
    with Session(engine) as session, refusal as refused:
        ClarificationQueue(session, settings).correct_diagnosis(
            ANN, order_id, version, contact_id=contact_id, new_code=typed, replaces="E11"
        )
    assert refused.value.field == "new_code"
    # Nothing changed: the same version, the same diagnoses, no correction event.
    assert _version(engine, order_id) == version
    with Session(engine) as session:
        codes = [d.code for d in session.exec(select(OrderDiagnosis)) if d.active]
        assert codes == ["E11"]
        assert not session.exec(
            select(OrderEvent).where(OrderEvent.action == "diagnosis_corrected")
        ).first()


def test_the_inline_check_reads_the_release_of_the_date_of_service(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        queue = ClarificationQueue(session, settings)
        good = queue.check_code(order, "e11.9")
        assert good.ok
        assert good.description == "Type 2 diabetes mellitus without complications"
        assert "valid and billable on 2026-03-15" in good.reason
        header = queue.check_code(order, "E11")
        assert not header.ok
        assert re.search(r"one of the \d+ complete codes under it", header.reason)


def test_a_code_already_on_the_order_is_not_added_twice(engine: Engine, settings: Settings) -> None:
    spec = OrderSpec(diagnoses=[("E11", "Diabetes"), ("E11.9", "Type 2 diabetes")])
    order_id = held_order(engine, settings, spec)
    contact_id = _answered(engine, settings, order_id)
    with Session(engine) as session, pytest.raises(WorkflowError, match="already on the order"):
        ClarificationQueue(session, settings).correct_diagnosis(
            ANN, order_id, _version(engine, order_id), contact_id=contact_id, new_code="E11.9"
        )


def test_removing_a_diagnosis_cites_the_answer_and_reverifies(
    engine: Engine, settings: Settings
) -> None:
    spec = OrderSpec(diagnoses=[("E11", "Diabetes"), ("E11.9", "Type 2 diabetes")])
    order_id = held_order(engine, settings, spec)
    contact_id = _answered(engine, settings, order_id)
    with Session(engine) as session:
        result = ClarificationQueue(session, settings).remove_diagnosis(
            ANN, order_id, _version(engine, order_id), contact_id=contact_id, code="e11"
        )
    assert result.order.status == OrderStatus.VERIFIED.value
    with Session(engine) as session:
        active = [d.code for d in session.exec(select(OrderDiagnosis)) if d.active]
        assert active == ["E11.9"]
        event = session.exec(
            select(OrderEvent).where(OrderEvent.action == "diagnosis_removed")
        ).one()
        assert event.detail["contact_id"] == contact_id
        assert event.detail["before"] == {"diagnoses": ["E11", "E11.9"]}
        assert event.detail["after"] == {"diagnoses": ["E11.9"]}


def test_an_npi_from_the_office_is_checked_then_set_and_the_order_reverified(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    contact_id = _answered(engine, settings, order_id)
    with Session(engine) as session, pytest.raises(WorkflowError, match="fails its check digit"):
        ClarificationQueue(session, settings).correct_provider_npi(
            ANN, order_id, _version(engine, order_id), contact_id=contact_id, npi="1234567890"
        )
    with Session(engine) as session:
        ClarificationQueue(session, settings).correct_provider_npi(
            ANN, order_id, _version(engine, order_id), contact_id=contact_id, npi="1234 567 893"
        )
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        assert order.provider_npi == "1234567893"
        event = session.exec(
            select(OrderEvent).where(OrderEvent.action == "provider_npi_corrected")
        ).one()
        assert event.detail["before"] == {"provider_npi": "1987654328"}


def test_release_after_the_worker_released_the_order_says_so_instead_of_a_conflict(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    contact_id = _answered(engine, settings, order_id)
    with Session(engine) as session:
        ClarificationQueue(session, settings).correct_diagnosis(
            ANN,
            order_id,
            _version(engine, order_id),
            contact_id=contact_id,
            new_code="E11.9",
            replaces="E11",
        )
    seen = _version(engine, order_id)  # the page the coder still has open
    with Session(engine) as session:
        waiting = release_note(session, str(order_id))
        assert waiting is not None
        assert waiting.pending  # verified: the worker has not taken it yet
    assert release_verified(engine) == 1  # the worker takes the now verified order
    with Session(engine) as session:
        result = ClarificationQueue(session, settings).release(ANN, order_id, seen)
    assert result.note == ALREADY_RELEASED
    assert result.order.status == OrderStatus.RELEASED.value
    with Session(engine) as session:
        note = release_note(session, str(order_id))
        assert note is not None
        assert not note.pending
        assert note.by is None  # by the rules, not by a person
        assert note.patient == "Lindqvist, Marta"
        assert release_note(session, "9" * 30) is None
