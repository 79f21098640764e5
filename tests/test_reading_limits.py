"""Limits on what one message may hold: each gives a precise reason in the error queue."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.message_shapes import (
    dg1_segments,
    nte_segments,
    obrs_in_one_order,
    orc12_repetitions,
    orders,
    pid3_repetitions,
)
from labintake.config import Settings
from labintake.errors import OrderReadError
from labintake.hl7.limits import ReadingLimits
from labintake.hl7.reader import read_orders
from labintake.interfaces import InterfaceRegistry
from labintake.models import InboundMessage, MessageEvent, Order
from labintake.reading.plan import reading_limits
from labintake.reading.reprocess import error_queue, reprocess_message
from labintake.reading.worker import read_pending
from tests.test_reading import store

LIMITS = ReadingLimits(
    orders_per_message=3,
    tests_per_order=4,
    notes_per_order=5,
    diagnoses_per_order=6,
    field_repetitions=7,
)


def _reason(text: str, limits: ReadingLimits = LIMITS) -> OrderReadError:
    with pytest.raises(OrderReadError) as caught:
        read_orders(text, limits=limits)
    return caught.value


def test_too_many_orders_names_the_count_the_limit_and_the_setting() -> None:
    error = _reason(orders(5))
    assert error.text == (
        "the message has 5 order groups (ORC/OBR); at most 3 are read in one message, "
        "ORC[4] is the first past it (LABINTAKE_MAX_ORDERS_PER_MESSAGE)"
    )
    assert error.location == "ORC[4]"


def test_too_many_obrs_in_one_order() -> None:
    error = _reason(obrs_in_one_order(6))
    assert error.text == (
        "ORC[1] has 6 tests (OBR); at most 4 are read in one order (LABINTAKE_MAX_TESTS_PER_ORDER)"
    )
    assert error.location == "ORC[1]"


def test_too_many_notes_counts_message_level_notes_in_every_order() -> None:
    assert "ORC[1] has 9 notes (NTE); at most 5" in _reason(nte_segments(9)).text
    shared = "NTE|1|L|before\rNTE|2|L|before\rNTE|3|L|before\rORC|"
    text = nte_segments(2).replace("ORC|", shared, 1)
    order = read_orders(text, limits=LIMITS).orders[0]  # 3 + 2 notes: at the limit
    assert (len(order.notes), len(order.tests[0].notes)) == (3, 2)
    error = _reason(text.replace("NTE|1|L|specimen", "NTE|1|L|specimen\rNTE|9|L|more", 1))
    assert "ORC[1] has 6 notes (NTE, 3 of them message-level)" in error.text


def test_too_many_diagnoses() -> None:
    error = _reason(dg1_segments(7))
    assert error.text.startswith("ORC[1] has 8 diagnoses (DG1); at most 6 are read in one order")
    assert error.text.endswith("(LABINTAKE_MAX_DIAGNOSES_PER_ORDER)")


def test_too_many_repetitions_names_the_field() -> None:
    error = _reason(pid3_repetitions(9))
    assert error.text == (
        "PID-3 has 10 repetitions; at most 7 are read in one field "
        "(LABINTAKE_MAX_FIELD_REPETITIONS)"
    )
    assert _reason(orc12_repetitions(8)).location == "ORC[1]-12"


def test_at_the_limits_the_message_is_read() -> None:
    assert len(read_orders(orders(3), limits=LIMITS).orders) == 3
    assert len(read_orders(obrs_in_one_order(4), limits=LIMITS).orders[0].tests) == 4
    assert len(read_orders(pid3_repetitions(6), limits=LIMITS).orders[0].patient.identifiers) == 7


def test_several_limits_are_named_together() -> None:
    text = obrs_in_one_order(6).replace("DG1|", "NTE|1|L|a\rNTE|2|L|b\r" * 3 + "DG1|", 1)
    error = _reason(text)
    assert "6 tests (OBR)" in error.text
    assert "6 notes (NTE)" in error.text


def test_settings_carry_the_limits() -> None:
    settings = Settings(
        development=True,
        max_orders_per_message=3,
        max_tests_per_order=4,
        max_notes_per_order=5,
        max_diagnoses_per_order=6,
        max_field_repetitions=7,
    )
    assert reading_limits(settings) == LIMITS
    assert reading_limits(Settings(development=True)) == ReadingLimits()


def test_environment_sets_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABINTAKE_MAX_TESTS_PER_ORDER", "12")
    assert Settings(development=True).max_tests_per_order == 12


def _stored(engine: Engine, text: str, control_id: str) -> int:
    raw = text.replace("SHAPEEHR|SHAPECLINIC", "EHR|CLINIC").replace("SHAPE1", control_id)
    return store(engine, raw.encode(), control_id)


def test_an_over_limit_message_goes_to_the_error_queue_and_reprocesses_after_a_raise(
    engine: Engine,
) -> None:
    registry = InterfaceRegistry(())
    message_id = _stored(engine, obrs_in_one_order(6), "BIG1")
    ordinary = _stored(engine, obrs_in_one_order(2), "SMALL1")
    assert read_pending(engine, registry, limits=LIMITS) == 2
    queued = error_queue(engine)
    assert [(q.message_id, q.error) for q in queued] == [
        (
            message_id,
            "ORC[1] has 6 tests (OBR); at most 4 are read in one order "
            "(LABINTAKE_MAX_TESTS_PER_ORDER)",
        )
    ]
    with Session(engine) as session:
        assert session.get(InboundMessage, ordinary).status == "read"  # type: ignore[union-attr]
    outcome = reprocess_message(
        engine, registry, message_id, "manager", ReadingLimits(tests_per_order=10)
    )
    assert outcome.status == "read"
    with Session(engine) as session:
        tests = session.exec(select(Order).where(Order.message_id == message_id)).one()
        assert tests.status == "received"
        events = session.exec(
            select(MessageEvent.action).where(MessageEvent.message_id == message_id)
        ).all()
        assert list(events) == ["read_error", "reprocessed"]
