"""A cancel must name the order's sending application, facility, placer number and patient.

Before, an ``ORC|CA`` with another application, another patient and a guessed placer number
cancelled a held order of the same facility.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session
from test_reading import (
    PID,
    REGISTRY,
    message_row,
    new_order,
    orders_of,
    read_pending,
    store,
)

from labintake.models import InboundMessage, Order

OTHER_PID = "PID|1||MRN999^^^CLINIC^MR||Roe^Richard||19700202|M"


def _foreign_cancel(
    engine: Engine, control_id: str, placer: str, *, application: str, pid: str
) -> int:
    raw = (
        f"MSH|^~\\&|{application}|CLINIC|LAB|LAB|20240301101500||ORM^O01|{control_id}|P|2.5.1\r"
        f"{pid}\rORC|CA|{placer}\r"
    ).encode()
    message_id = store(engine, raw, control_id)
    with Session(engine) as session:
        session.execute(
            update(InboundMessage)
            .where(InboundMessage.id == message_id)  # type: ignore[arg-type]
            .values(sending_application=application)
        )
        session.commit()
    return message_id


def _held_order(engine: Engine) -> int:
    ordered = new_order(engine, "C1", "P1")
    read_pending(engine, REGISTRY)
    with Session(engine) as session:
        session.execute(update(Order).values(status="held"))
        session.commit()
    return ordered


def test_cancel_from_another_application_for_another_patient_cancels_nothing(
    engine: Engine,
) -> None:
    ordered = _held_order(engine)
    forged = _foreign_cancel(engine, "X1", "P1", application="INTRUDER", pid=OTHER_PID)
    read_pending(engine, REGISTRY)
    assert [o.status for o in orders_of(engine, ordered)] == ["held"]
    message = message_row(engine, forged)
    assert message.status == "error"
    assert message.error == (
        "ORC[1]-1 CA: order(s) with placer order number 'P1' from 'CLINIC' found, but sending "
        "application 'INTRUDER' is not the order's (EHR); the patient (PID-3) is not the "
        "order's: nothing cancelled"
    )
    assert "MRN" not in (message.error or "")


def test_cancel_for_another_patient_from_the_right_application_cancels_nothing(
    engine: Engine,
) -> None:
    ordered = _held_order(engine)
    wrong_patient = _foreign_cancel(engine, "X2", "P1", application="EHR", pid=OTHER_PID)
    read_pending(engine, REGISTRY)
    assert [o.status for o in orders_of(engine, ordered)] == ["held"]
    assert message_row(engine, wrong_patient).error == (
        "ORC[1]-1 CA: order(s) with placer order number 'P1' from 'CLINIC' found, but the "
        "patient (PID-3) is not the order's: nothing cancelled"
    )


def test_cancel_from_another_application_for_the_same_patient_cancels_nothing(
    engine: Engine,
) -> None:
    ordered = _held_order(engine)
    other_app = _foreign_cancel(engine, "X3", "P1", application="OTHER", pid=PID)
    read_pending(engine, REGISTRY)
    assert [o.status for o in orders_of(engine, ordered)] == ["held"]
    assert "sending application 'OTHER' is not the order's (EHR)" in (
        message_row(engine, other_app).error or ""
    )


def test_mismatched_cancel_in_the_same_batch_as_the_order(engine: Engine) -> None:
    ordered = new_order(engine, "C1", "P1")
    forged = _foreign_cancel(engine, "X4", "P1", application="INTRUDER", pid=OTHER_PID)
    read_pending(engine, REGISTRY)
    assert [o.status for o in orders_of(engine, ordered)] == ["received"]
    assert message_row(engine, forged).status == "error"


def test_matching_cancel_still_cancels_with_the_namespace_compared_case_blind(
    engine: Engine,
) -> None:
    ordered = _held_order(engine)
    own = _foreign_cancel(engine, "X5", "P1", application="ehr^1.2.3^ISO", pid=PID)
    read_pending(engine, REGISTRY)
    assert [o.status for o in orders_of(engine, ordered)] == ["cancelled"]
    assert message_row(engine, own).status == "read"
