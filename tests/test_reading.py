"""The reading worker on both databases: orders stored, cancels, the error queue, reprocessing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

import labintake.reading.worker as worker_module
from labintake.errors import NotFoundError, WorkflowError
from labintake.interfaces import Interface, InterfaceRegistry
from labintake.models import (
    InboundMessage,
    MessageEvent,
    Order,
    OrderDiagnosis,
    OrderEvent,
    OrderTest,
)
from labintake.reading.reprocess import count_errors, error_queue, reprocess_message
from labintake.reading.worker import read_pending, read_until_empty

REGISTRY = InterfaceRegistry(
    [
        Interface(
            name="clinic",
            sending_application="EHR",
            sending_facility="CLINIC",
            test_code_system="CPT",
            test_codes={"80061": "LIPID", "LAB9": "CBCD"},
            timezone="America/Chicago",
        )
    ]
)
PID = "PID|1||MRN1^^^CLINIC^MR||Doe^Jane||19600101|F"


def hl7(control_id: str, *segments: str, facility: str = "CLINIC") -> bytes:
    msh = f"MSH|^~\\&|EHR|{facility}|LAB|LAB|20240301101500||ORM^O01|{control_id}|P|2.5.1"
    return ("\r".join((msh, *segments)) + "\r").encode()


def store(engine: Engine, raw: bytes, control_id: str, facility: str = "CLINIC") -> int:
    """A message as intake leaves it: stored, acknowledged, status received."""
    with Session(engine) as session:
        message = InboundMessage(
            sending_application="EHR",
            sending_facility=facility,
            control_id=control_id,
            message_type="ORM^O01",
            version="2.5.1",
            raw=raw,
            ack_code="AA",
            ack=b"MSA|AA",
        )
        session.add(message)
        session.commit()
        assert message.id is not None
        return message.id


def new_order(engine: Engine, control_id: str, placer: str, *more: str) -> int:
    return store(
        engine,
        hl7(control_id, PID, f"ORC|NW|{placer}", f"OBR|1|{placer}||80061^Lipid^CPT", *more),
        control_id,
    )


def cancel(engine: Engine, control_id: str, placer: str) -> int:
    return store(engine, hl7(control_id, PID, f"ORC|CA|{placer}"), control_id)


def message_row(engine: Engine, message_id: int) -> InboundMessage:
    with Session(engine) as session:
        found = session.get(InboundMessage, message_id)
        assert found is not None
        return found


def orders_of(engine: Engine, message_id: int) -> list[Order]:
    with Session(engine) as session:
        return list(
            session.execute(
                select(Order).where(Order.message_id == message_id).order_by(col(Order.id))
            ).scalars()
        )


def events(engine: Engine, order_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with Session(engine) as session:
        rows = session.execute(
            select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(col(OrderEvent.id))
        ).scalars()
        return [(e.action, e.actor, e.detail) for e in rows]


def message_events(engine: Engine, message_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with Session(engine) as session:
        rows = session.execute(
            select(MessageEvent)
            .where(MessageEvent.message_id == message_id)
            .order_by(col(MessageEvent.id))
        ).scalars()
        return [(e.action, e.actor, e.detail) for e in rows]


def test_received_message_becomes_orders_tests_diagnoses_and_a_received_event(
    engine: Engine,
) -> None:
    message_id = store(
        engine,
        hl7(
            "C1",
            PID,
            "IN1|1|MCRB|CMS|Medicare Part B",
            "DG1|1|I10|E78.5^Hyperlipidemia^I10",
            "ORC|NW|P1|||||||20240301083000|||1234567893^Okafor^Chidi^^^^^^NPI",
            "OBR|1|P1||80061^Lipid^CPT|||20240301080000",
            "NTE|1||fasting",
            "OBR|2|P1||LAB9^CBC^L^57021-8^CBC^LN",
            "ORC|NW|P2",
            "OBR|1|P2||84443^TSH",
        ),
        "C1",
    )
    assert read_pending(engine, REGISTRY) == 1
    message = message_row(engine, message_id)
    assert (message.status, message.error, message.read_attempts) == ("read", None, 1)
    assert message.read_at is not None
    first, second = orders_of(engine, message_id)
    assert (first.placer_order_number, first.group_index, first.status) == ("P1", 1, "received")
    assert (first.sending_application, first.sending_facility) == ("EHR", "CLINIC")
    assert (first.patient_mrn, first.patient_birth_date) == ("MRN1", date(1960, 1, 1))
    assert (first.provider_npi, first.payer_company_name) == ("1234567893", "Medicare Part B")
    assert first.date_of_service == date(2024, 3, 1)
    # 08:30 in the sender's zone (America/Chicago, CST in March before DST) is 14:30 UTC.
    assert first.ordered_at == datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    assert first.details["tests"][0]["notes"] == ["fasting"]
    assert first.details["date_of_service_source"] == "OBR[1]-7"
    with Session(engine) as session:
        tests = session.execute(
            select(OrderTest).where(OrderTest.order_id == first.id).order_by(col(OrderTest.seq))
        ).scalars()
        resolved = [(t.sent_code, t.local_code, t.loinc, t.cpt) for t in tests]
        diagnoses = session.execute(
            select(OrderDiagnosis.code, OrderDiagnosis.location).where(
                OrderDiagnosis.order_id == second.id
            )
        ).all()
    assert resolved == [("80061", "LIPID", None, "80061"), ("LAB9", "CBCD", "57021-8", None)]
    assert [tuple(d) for d in diagnoses] == [("E78.5", "DG1[1]-3")]
    [(action, actor, detail)] = events(engine, first.id or 0)
    assert (action, actor) == ("received", "system")
    assert detail == {"message_id": message_id, "control_id": "C1", "group_index": 1}


def test_unreadable_message_goes_to_error_with_reason_and_creates_no_order(
    engine: Engine,
) -> None:
    good = new_order(engine, "C1", "P1")
    bad = store(engine, hl7("C2", PID, "ORC|NW|P2", "OBR|1|P2||"), "C2")
    assert read_pending(engine, REGISTRY) == 2
    assert message_row(engine, good).status == "read"
    failed = message_row(engine, bad)
    assert (failed.status, failed.error) == ("error", "OBR[1]-4 empty: no test requested")
    assert orders_of(engine, bad) == []
    [(action, actor, detail)] = message_events(engine, bad)
    assert (action, actor, detail) == (
        "read_error",
        "system",
        {"reason": "OBR[1]-4 empty: no test requested"},
    )
    queue = error_queue(engine)
    assert [(q.message_id, q.control_id, q.error) for q in queue] == [
        (bad, "C2", "OBR[1]-4 empty: no test requested")
    ]
    assert count_errors(engine) == 1


def test_cancel_marks_the_earlier_order_cancelled_with_a_placer_event(engine: Engine) -> None:
    ordered = new_order(engine, "C1", "P1")
    read_pending(engine, REGISTRY)
    cancelling = cancel(engine, "C2", "P1")
    assert read_pending(engine, REGISTRY) == 1
    [order] = orders_of(engine, ordered)
    assert (order.status, order.row_version) == ("cancelled", 2)
    assert message_row(engine, cancelling).status == "read"
    assert orders_of(engine, cancelling) == []
    action, actor, detail = events(engine, order.id or 0)[-1]
    assert (action, actor) == ("cancelled", "placer")
    assert detail == {
        "message_id": cancelling,
        "control_id": "C2",
        "location": "ORC[1]-1",
        "previous_status": "received",
        "after_release": False,
    }


def test_cancel_in_the_same_batch_as_its_order_and_a_later_reorder_is_kept(
    engine: Engine,
) -> None:
    first = new_order(engine, "C1", "P1")
    cancel(engine, "C2", "P1")
    repeat = cancel(engine, "C3", "P1")
    again = new_order(engine, "C4", "P1")  # the office orders it again after cancelling
    assert read_pending(engine, REGISTRY) == 4
    [order] = orders_of(engine, first)
    assert order.status == "cancelled"
    assert [a for a, _, _ in events(engine, order.id or 0)] == [
        "received",
        "cancelled",
        "cancel_repeated",
    ]
    assert message_row(engine, repeat).status == "read"
    assert [o.status for o in orders_of(engine, again)] == ["received"]


def test_a_batch_is_written_in_short_transactions_and_reads_as_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite each write transaction holds the whole file's write lock, which intake's
    # commits wait for: a batch is written WRITE_CHUNK messages at a time. A cancel whose
    # order is in an earlier transaction of the same batch still finds it.
    monkeypatch.setattr(worker_module, "WRITE_CHUNK", 2)
    first = new_order(engine, "C1", "P1")
    new_order(engine, "C2", "P2")
    cancel(engine, "C3", "P1")
    new_order(engine, "C4", "P4")
    last = new_order(engine, "C5", "P5")
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    event.listen(engine, "commit", committed)
    try:
        assert read_pending(engine, REGISTRY) == 5
    finally:
        event.remove(engine, "commit", committed)
    [order] = orders_of(engine, first)
    assert order.status == "cancelled"
    assert [o.status for o in orders_of(engine, last)] == ["received"]
    # PostgreSQL locks the batch's rows (SKIP LOCKED) for one transaction instead.
    assert len(commits) == (3 if engine.dialect.name == "sqlite" else 1)


def test_cancel_reaches_a_held_order_and_a_repeat_cancel_is_recorded_not_an_error(
    engine: Engine,
) -> None:
    ordered = new_order(engine, "C1", "P1")
    read_pending(engine, REGISTRY)
    with Session(engine) as session:
        session.execute(update(Order).values(status="held"))
        session.commit()
    cancel(engine, "C2", "P1")
    repeat = cancel(engine, "C3", "P1")
    assert read_pending(engine, REGISTRY) == 2
    [order] = orders_of(engine, ordered)
    assert order.status == "cancelled"
    history = [
        (a, actor, d.get("previous_status")) for a, actor, d in events(engine, order.id or 0)
    ]
    assert history == [
        ("received", "system", None),
        ("cancelled", "placer", "held"),
        ("cancel_repeated", "placer", "cancelled"),
    ]
    assert message_row(engine, repeat).status == "read"


def test_cancel_for_an_unknown_order_is_an_error_with_reason(engine: Engine) -> None:
    other_sender = store(
        engine,
        hl7("C1", PID, "ORC|NW|P1", "OBR|1|P1||80061", facility="ELSEWHERE"),
        "C1",
        "ELSEWHERE",
    )
    cancelling = cancel(engine, "C2", "P1")
    read_pending(engine, REGISTRY)
    message = message_row(engine, cancelling)
    assert message.status == "error"
    assert message.error == (
        "ORC[1]-1 CA: no earlier order with placer order number 'P1' from 'CLINIC' to cancel"
    )
    assert [o.status for o in orders_of(engine, other_sender)] == ["received"]


def test_reprocess_after_the_order_arrives_cancels_it_and_keeps_the_first_error(
    engine: Engine,
) -> None:
    cancelling = cancel(engine, "C1", "P1")
    read_pending(engine, REGISTRY)
    first_error = message_row(engine, cancelling).error
    assert first_error is not None
    ordered = new_order(engine, "C2", "P1")  # the order itself came late
    read_pending(engine, REGISTRY)

    outcome = reprocess_message(engine, REGISTRY, cancelling, actor="alice")

    assert (outcome.status, outcome.error, outcome.previous_error) == ("read", None, first_error)
    [order] = orders_of(engine, ordered)
    assert order.status == "cancelled"
    assert outcome.cancelled_order_ids == (order.id,)
    message = message_row(engine, cancelling)
    assert (message.status, message.error, message.read_attempts) == ("read", None, 2)
    actions = message_events(engine, cancelling)
    assert [(a, actor) for a, actor, _ in actions] == [
        ("read_error", "system"),
        ("reprocessed", "alice"),
    ]
    assert actions[1][2]["previous_error"] == first_error
    assert actions[1][2]["outcome"] == "read"
    assert error_queue(engine) == []


def test_reprocess_that_fails_again_keeps_both_reasons_and_new_orders_say_who(
    engine: Engine,
) -> None:
    broken = store(engine, hl7("C1", "ORC|NW|P1", "OBR|1|P1||80061"), "C1")
    read_pending(engine, REGISTRY)
    outcome = reprocess_message(engine, REGISTRY, broken, actor="bob")
    assert (outcome.status, outcome.error) == ("error", "no PID segment")
    assert [a for a, _, _ in message_events(engine, broken)] == [
        "read_error",
        "read_error",
        "reprocessed",
    ]
    assert message_events(engine, broken)[1][2] == {
        "reason": "no PID segment",
        "reprocessed_by": "bob",
        "previous_error": "no PID segment",
    }
    # A message read on reprocess: its orders' first event names who and the earlier error.
    late = cancel(engine, "C2", "P9")
    read_pending(engine, REGISTRY)
    with Session(engine) as session:
        session.execute(
            update(InboundMessage)
            .where(col(InboundMessage.id) == late)
            .values(raw=hl7("C2", PID, "ORC|NW|P9", "OBR|1|P9||80061"))
        )
        session.commit()
    done = reprocess_message(engine, REGISTRY, late, actor="carol")
    [order_id] = done.order_ids
    [(action, actor, detail)] = events(engine, order_id)
    assert (action, actor, detail["reprocessed_by"]) == ("received", "carol", "carol")
    assert "no earlier order" in detail["previous_error"]


def test_reprocess_refuses_unknown_and_already_read_messages(engine: Engine) -> None:
    read_id = new_order(engine, "C1", "P1")
    read_pending(engine, REGISTRY)
    with pytest.raises(NotFoundError):
        reprocess_message(engine, REGISTRY, 999_999, actor="alice")
    with pytest.raises(WorkflowError, match="only messages in error"):
        reprocess_message(engine, REGISTRY, read_id, actor="alice")


def test_text_longer_than_its_column_is_cut_and_said_so(engine: Engine) -> None:
    long_name = "X" * 500
    message_id = store(
        engine,
        hl7("C1", f"PID|1||MRN1||{long_name}^Jane", "ORC|NW|P1", "OBR|1|P1||80061"),
        "C1",
    )
    read_pending(engine, REGISTRY)
    [order] = orders_of(engine, message_id)
    assert order.patient_family_name == "X" * 200
    assert "order.patient_family_name cut to 200 characters" in order.details["warnings"]


@pytest.fixture
def refusing_placer(engine: Engine) -> Iterator[str]:
    """The database itself refuses orders with this placer number (trigger / CHECK)."""
    placer = "REFUSED"
    if engine.dialect.name == "sqlite":
        create = (
            "CREATE TRIGGER refuse_placer BEFORE INSERT ON lab_order "
            f"WHEN NEW.placer_order_number = '{placer}' "
            "BEGIN SELECT RAISE(ABORT, 'placer refused'); END"
        )
        drop = "DROP TRIGGER refuse_placer"
    else:
        create = (
            "ALTER TABLE lab_order ADD CONSTRAINT refuse_placer "
            f"CHECK (placer_order_number <> '{placer}')"
        )
        drop = "ALTER TABLE lab_order DROP CONSTRAINT refuse_placer"
    with engine.begin() as connection:
        connection.execute(text(create))
    try:
        yield placer
    finally:
        with engine.begin() as connection:
            connection.execute(text(drop))


def test_a_batch_the_database_refuses_is_written_message_by_message(
    engine: Engine, refusing_placer: str
) -> None:
    good = new_order(engine, "C1", "P1")
    refused = new_order(engine, "C2", refusing_placer)
    later = new_order(engine, "C3", "P3")
    assert read_pending(engine, REGISTRY) == 3
    assert message_row(engine, good).status == "read"
    assert message_row(engine, later).status == "read"
    failed = message_row(engine, refused)
    assert failed.status == "error"
    assert (failed.error or "").startswith("storage refused the orders: ")
    assert orders_of(engine, refused) == []
    [(action, _, detail)] = message_events(engine, refused)
    assert action == "read_error"
    assert detail["reason"] == failed.error


def test_absurd_quantity_and_nul_bytes_do_not_reach_the_database(engine: Engine) -> None:
    message_id = store(
        engine,
        hl7(
            "C1", PID.replace("Doe", "Do\x00e"), "ORC|NW|P2", "TQ1|1|99999999999", "OBR|1|P2||80061"
        ),
        "C1",
    )
    read_pending(engine, REGISTRY)
    [order] = orders_of(engine, message_id)
    assert order.patient_family_name == "Doe"
    assert any("not a whole count from 1 to 999" in w for w in order.details["warnings"])


def test_limit_bounds_a_batch_and_read_until_empty_drains_the_backlog(engine: Engine) -> None:
    for n in range(7):
        new_order(engine, f"C{n}", f"P{n}")
    assert read_pending(engine, REGISTRY, limit=3) == 3
    assert read_until_empty(engine, REGISTRY, limit=3) == 4
    assert read_pending(engine, REGISTRY) == 0


def test_two_workers_side_by_side_read_every_message_once(engine: Engine) -> None:
    ids = [new_order(engine, f"C{n}", f"P{n}") for n in range(60)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            read_until_empty(engine, REGISTRY, limit=7)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Session(engine) as session:
        statuses = set(session.execute(select(InboundMessage.status)).scalars())
        per_message = session.execute(select(Order.message_id)).scalars().all()
    assert statuses == {"read"}
    assert sorted(per_message) == ids


def test_a_message_with_a_new_order_and_a_cancel_does_both(engine: Engine) -> None:
    ordered = new_order(engine, "C1", "P1")
    read_pending(engine, REGISTRY)
    both = store(
        engine,
        hl7("C2", PID, "ORC|CA|P1", "ORC|NW|P2", "OBR|1|P2||80061"),
        "C2",
    )
    read_pending(engine, REGISTRY)
    assert [o.status for o in orders_of(engine, ordered)] == ["cancelled"]
    [new] = orders_of(engine, both)
    assert (new.placer_order_number, new.group_index, new.status) == ("P2", 2, "received")


def test_bytes_the_declared_charset_cannot_decode_are_read_with_a_warning(
    engine: Engine,
) -> None:
    raw = hl7("C1", "PID|1||MRN1||Müller^Zoë", "ORC|NW|P1", "OBR|1|P1||80061")
    with Session(engine) as session:
        session.add(
            InboundMessage(
                sending_application="EHR",
                sending_facility="CLINIC",
                control_id="C1",
                charset="ASCII",
                raw=raw,
                ack_code="AA",
                ack=b"",
            )
        )
        session.commit()
    read_pending(engine, REGISTRY)
    with Session(engine) as session:
        order = session.execute(select(Order)).scalar_one()
    assert order.patient_family_name == "Müller"
    assert "MSH-18 'ASCII' could not decode the message; read as utf-8" in order.details["warnings"]


def test_a_cancel_in_a_refused_batch_is_applied_once_when_retried(
    engine: Engine, refusing_placer: str
) -> None:
    ordered = new_order(engine, "C1", "P1")
    read_pending(engine, REGISTRY)
    cancelling = cancel(engine, "C2", "P1")
    new_order(engine, "C3", refusing_placer)
    assert read_pending(engine, REGISTRY) == 2
    [order] = orders_of(engine, ordered)
    assert order.status == "cancelled"
    assert [a for a, _, _ in events(engine, order.id or 0)] == ["received", "cancelled"]
    assert message_row(engine, cancelling).status == "read"


def test_cancel_waits_while_its_order_is_in_another_workers_batch(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL runs workers side by side (SKIP LOCKED)")
    ordered = new_order(engine, "C1", "P1")
    cancelling = cancel(engine, "C2", "P1")
    with engine.connect() as other_worker:
        other_worker.execute(
            text("SELECT id FROM inbound_message WHERE id = :id FOR UPDATE"), {"id": ordered}
        )
        assert read_pending(engine, REGISTRY) == 0  # the cancel waits, not an error
        waiting = message_row(engine, cancelling)
        assert (waiting.status, waiting.read_attempts) == ("received", 0)
        other_worker.rollback()
    assert read_pending(engine, REGISTRY) == 2
    assert [o.status for o in orders_of(engine, ordered)] == ["cancelled"]
    assert message_row(engine, cancelling).status == "read"
