"""Large messages verified beside the pipeline: the isolated reader verifies the orders it read,
in its own thread, and the pipeline's verifier passes that message by meanwhile (SQLite and
PostgreSQL)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from verification_rows import store_order

from labintake.config import Settings
from labintake.hl7.limits import ReadingLimits
from labintake.models import InboundMessage, Order
from labintake.reading.isolation import IsolatedReader
from labintake.reading.sandbox import ReadingSandbox
from labintake.verification.aside import MessagesAside
from labintake.verification.service import pending_verifier
from tests.test_reading import PID, hl7, store

LARGEST = 512


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[ReadingSandbox]:
    reader = ReadingSandbox(tmp_path, ReadingLimits())
    yield reader
    reader.stop()


def statuses(engine: Engine, message_id: int) -> list[str]:
    with Session(engine) as session:
        query = select(Order.status).where(Order.message_id == message_id)
        return list(session.exec(query.order_by(col(Order.id))).all())


def message_of(engine: Engine, order_id: int) -> int:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.message_id


def large_message(engine: Engine, control_id: str, groups: int) -> int:
    """`groups` orders of 10 tests each, stored as intake leaves it (over LARGEST bytes)."""
    segments = [PID]
    for group in range(1, groups + 1):
        segments.append(f"ORC|NW|PX{group}")
        segments += [f"OBR|{n}|PX{group}||80061^Lipid panel^CPT" for n in range(1, 11)]
        segments.append("DG1|1|I10|E78.5^Hyperlipidemia^I10")
    raw = hl7(control_id, *segments)
    assert len(raw) > LARGEST
    return store(engine, raw, control_id)


def test_the_pipeline_passes_by_a_message_set_aside_which_is_verified_on_its_own(
    engine: Engine, settings: Settings
) -> None:
    first = store_order(engine, [("80061", "CPT")], ["E78.5"])
    second = store_order(engine, [("80061", "CPT")], ["E78.5"], mrn="MRN2")
    aside = MessagesAside()
    verifier = pending_verifier(settings, engine, aside=aside)
    with aside.holding(message_of(engine, first)):
        assert aside.ids() == {message_of(engine, first)}
        assert verifier(500) == 1
        assert (statuses(engine, message_of(engine, first)), verifier(500)) == (["received"], 0)
        assert verifier.message(message_of(engine, first)) == 1
    assert aside.ids() == frozenset()
    assert statuses(engine, message_of(engine, first)) == ["verified"]
    assert statuses(engine, message_of(engine, second)) == ["verified"]


def test_the_isolated_reader_verifies_every_order_it_read_while_the_pipeline_passes_it_by(
    engine: Engine, settings: Settings, sandbox: ReadingSandbox
) -> None:
    large = large_message(engine, "LARGE1", groups=5)
    aside = MessagesAside()
    verifier = pending_verifier(settings, engine, aside=aside)
    seen: list[tuple[frozenset[int], list[str], int]] = []

    def verify(message_id: int) -> int:
        # what the pipeline sees while the message is being verified here
        seen.append((aside.ids(), statuses(engine, message_id), verifier(500)))
        return verifier.message(message_id)

    reader = IsolatedReader(
        engine, sandbox, largest=LARGEST, budget_seconds=10, attempts=3, verify=verify, aside=aside
    )
    assert reader.read_next() == 1
    assert seen == [(frozenset({large}), ["received"] * 5, 0)]
    assert aside.ids() == frozenset()
    after = statuses(engine, large)
    assert len(after) == 5
    assert set(after) <= {"verified", "held"}


def test_when_verifying_aside_fails_the_message_goes_back_to_the_pipeline(
    engine: Engine, settings: Settings, sandbox: ReadingSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    large = large_message(engine, "LARGE2", groups=2)
    aside = MessagesAside()
    verifier = pending_verifier(settings, engine, aside=aside)

    def verify(message_id: int) -> int:
        raise RuntimeError("code tables gone")

    reader = IsolatedReader(
        engine, sandbox, largest=LARGEST, budget_seconds=10, attempts=3, verify=verify, aside=aside
    )
    with caplog.at_level(logging.ERROR, logger="labintake.reading.isolation"):
        assert reader.read_next() == 1
    assert f"verifying the orders of message {large} failed" in caplog.text
    assert aside.ids() == frozenset()
    assert statuses(engine, large) == ["received", "received"]
    assert verifier(500) == 2
    assert set(statuses(engine, large)) <= {"verified", "held"}


def test_a_message_not_read_into_orders_is_not_verified(
    engine: Engine, settings: Settings, sandbox: ReadingSandbox
) -> None:
    unreadable = store(engine, hl7("BROKEN1", "PID|1||" + "x" * 2000 + "\rZZZ|1"), "BROKEN1")
    called: list[int] = []
    reader = IsolatedReader(
        engine,
        sandbox,
        largest=LARGEST,
        budget_seconds=10,
        attempts=3,
        verify=lambda message_id: called.append(message_id) or 0,
        aside=MessagesAside(),
    )
    assert reader.read_next() == 1
    assert called == []
    assert statuses(engine, unreadable) == []
    with Session(engine) as session:
        parked = session.get(InboundMessage, unreadable)
        assert parked is not None
        assert parked.status == "error"
        assert parked.error == "no order group: the message has no ORC or OBR segment"
