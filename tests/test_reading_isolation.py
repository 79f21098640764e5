"""Poison isolation: large and failing messages are read alone, within a time budget, a
bounded number of times (counted in the database, so also across restarts), then parked;
ordinary messages go on meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from benchmarks.message_shapes import deep_components
from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import InterfaceRegistry
from labintake.models import InboundMessage, MessageEvent, Order
from labintake.reading.isolation import IsolatedReader
from labintake.reading.reprocess import error_queue
from labintake.reading.sandbox import ReadingSandbox
from labintake.reading.worker import read_pending
from tests.poison_reader import HANGS, KILLS, poisoned_plan_message
from tests.test_reading import PID, hl7, new_order, store

REGISTRY = InterfaceRegistry(())
LARGEST = 4096
BUDGET = 1.5


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[ReadingSandbox]:
    reader = ReadingSandbox(tmp_path, ReadingLimits(), poisoned_plan_message)
    yield reader
    reader.stop()


def isolated(engine: Engine, sandbox: ReadingSandbox, attempts: int = 3) -> IsolatedReader:
    return IsolatedReader(
        engine, sandbox, largest=LARGEST, budget_seconds=BUDGET, attempts=attempts
    )


def poison(engine: Engine, control_id: str, marker: bytes) -> int:
    note = "NTE|1|L|" + marker.decode()
    raw = hl7(control_id, PID, "ORC|NW|PX1", "OBR|1|PX1||80061^Lipid^CPT", note)
    return store(engine, raw, control_id)


def message(engine: Engine, message_id: int) -> InboundMessage:
    with Session(engine) as session:
        found = session.get(InboundMessage, message_id)
        assert found is not None
        return found


def events(engine: Engine, message_id: int) -> list[str]:
    with Session(engine) as session:
        query = select(MessageEvent.action).where(MessageEvent.message_id == message_id)
        return list(session.exec(query.order_by(col(MessageEvent.id))).all())


def test_a_large_message_is_left_by_the_batch_and_read_alone(
    engine: Engine, sandbox: ReadingSandbox
) -> None:
    text = deep_components(2000).replace("SHAPEEHR|SHAPECLINIC", "EHR|CLINIC")
    large = store(engine, text.encode(), "LARGE1")
    ordinary = new_order(engine, "SMALL1", "PL1")
    assert read_pending(engine, REGISTRY, largest=LARGEST) == 1
    assert (message(engine, ordinary).status, message(engine, large).status) == (
        "read",
        "received",
    )
    reader = isolated(engine, sandbox)
    assert reader.read_next() == 1
    assert reader.read_next() == 0
    read = message(engine, large)
    assert (read.status, read.read_attempts, read.error) == ("read", 1, None)
    with Session(engine) as session:
        assert session.exec(select(Order).where(Order.message_id == large)).one()


def test_a_read_past_the_budget_is_retried_then_parked_and_the_batch_goes_on(
    engine: Engine, sandbox: ReadingSandbox
) -> None:
    stuck = poison(engine, "HANG1", HANGS)
    # As after a failed attempt in a batch: from now on it is the isolated reader's.
    with Session(engine) as session, session.begin():
        session.execute(
            update(InboundMessage).where(col(InboundMessage.id) == stuck).values(read_attempts=1)
        )
    reader = isolated(engine, sandbox)
    thread = threading.Thread(target=reader.read_next)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    # Meanwhile an ordinary message is read by the batch reader at once.
    ordinary = new_order(engine, "ORDINARY1", "PL2")
    batch_started = time.monotonic()
    settled = 0
    while settled == 0 and time.monotonic() - batch_started < 5:
        settled = read_pending(engine, REGISTRY, largest=10 * 1024 * 1024)
    batch_seconds = time.monotonic() - batch_started
    assert message(engine, ordinary).status == "read"
    assert batch_seconds < 1.0
    thread.join(30)
    assert time.monotonic() - started >= BUDGET
    first = message(engine, stuck)
    assert first.status == "received"
    assert first.read_attempts == 2  # the batch's attempt and this one
    assert first.error is not None
    assert first.error.startswith("reading took longer than 1.5 s")
    assert "LABINTAKE_READ_TIMEOUT_SECONDS" in first.error
    assert reader.read_next() == 1  # third attempt: over the budget again, parked
    parked = message(engine, stuck)
    assert parked.status == "error"
    assert parked.read_attempts == 3
    assert parked.error is not None
    assert parked.error.startswith("not read after 3 attempts: reading took longer than 1.5 s")
    assert parked.error.endswith("parked (LABINTAKE_READ_ATTEMPTS)")
    assert [q.message_id for q in error_queue(engine)] == [stuck]
    assert events(engine, stuck) == ["read_failed", "read_error"]
    assert reader.read_next() == 0


def test_a_message_that_kills_the_reading_process_is_parked(
    engine: Engine, sandbox: ReadingSandbox
) -> None:
    deadly = poison(engine, "KILL1", KILLS)
    ordinary = new_order(engine, "ORDINARY2", "PL3")
    with Session(engine) as session, session.begin():
        session.execute(
            update(InboundMessage).where(col(InboundMessage.id) == deadly).values(read_attempts=1)
        )
    reader = isolated(engine, sandbox, attempts=2)
    assert reader.read_next() == 1
    parked = message(engine, deadly)
    assert parked.status == "error"
    assert parked.error is not None
    assert "the reading process ended while reading" in parked.error
    # The sandbox starts again for the next message.
    assert read_pending(engine, REGISTRY) == 1
    assert message(engine, ordinary).status == "read"


def test_attempts_count_across_restarts_a_message_tried_to_the_limit_is_parked_unread(
    engine: Engine, sandbox: ReadingSandbox
) -> None:
    # The worker died while reading this message three times (a restart each time): the
    # attempts were committed before each read.
    doomed = new_order(engine, "DOOMED1", "PL4")
    with Session(engine) as session, session.begin():
        session.execute(
            update(InboundMessage).where(col(InboundMessage.id) == doomed).values(read_attempts=3)
        )
    assert isolated(engine, sandbox).read_next() == 1
    parked = message(engine, doomed)
    assert (parked.status, parked.read_attempts) == ("error", 4)
    assert parked.error == (
        "not read after 3 attempts: the worker stopped while reading it each time; parked "
        "(LABINTAKE_READ_ATTEMPTS)"
    )
    assert sandbox.pid is None  # nothing was read


def test_an_internal_error_in_the_batch_is_retried_alone(
    engine: Engine, sandbox: ReadingSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import labintake.reading.plan as plan_module

    def broken(text: str, **_: object) -> object:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(plan_module, "read_orders", broken)
    flaky = new_order(engine, "FLAKY1", "PL5")
    assert read_pending(engine, REGISTRY) == 0  # nothing settled: it waits for a retry
    failed = message(engine, flaky)
    assert (failed.status, failed.read_attempts) == ("received", 1)
    assert failed.error == "internal error while reading: RuntimeError: reader bug"
    assert read_pending(engine, REGISTRY) == 0  # the batch no longer takes it
    # The sandbox's child has the real reader: the retry reads it.
    assert isolated(engine, sandbox).read_next() == 1
    read = message(engine, flaky)
    assert (read.status, read.read_attempts, read.error) == ("read", 2, None)
    assert events(engine, flaky) == ["read_failed"]
