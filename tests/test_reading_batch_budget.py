"""Every message is read within the time budget: the small ones too, which are read in
batches. A small message that would read for ever (a reader bug nobody foresaw) holds its
batch up for the budget at most, then is read alone by the isolated reader and parked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from labintake.hl7.limits import ReadingLimits
from labintake.reading.reprocess import error_queue
from labintake.reading.sandbox import ReadingSandbox
from labintake.reading.worker import BatchReading, read_pending
from tests.poison_reader import HANGS, KILLS, poisoned_plan_message
from tests.test_reading import new_order
from tests.test_reading_isolation import REGISTRY, events, isolated, message, poison

BUDGET = 1.5


@pytest.fixture
def batch_sandbox(tmp_path: Path) -> Iterator[ReadingSandbox]:
    reader = ReadingSandbox(tmp_path, ReadingLimits(), poisoned_plan_message)
    yield reader
    reader.stop()


def test_a_small_message_reading_for_ever_holds_its_batch_up_for_the_budget_at_most(
    engine: Engine, batch_sandbox: ReadingSandbox, tmp_path: Path
) -> None:
    reading = BatchReading(REGISTRY, ReadingLimits(), batch_sandbox, BUDGET)
    warm = new_order(engine, "WARM1", "PL0")  # the reading process starts with this batch
    assert read_pending(engine, REGISTRY, reading=reading) == 1
    before = new_order(engine, "BEFORE1", "PL1")
    stuck = poison(engine, "HANG1", HANGS)
    after = new_order(engine, "AFTER1", "PL2")
    assert len(poison_bytes := message(engine, stuck).raw or b"") < 1024  # a small one
    assert HANGS in poison_bytes
    started = time.monotonic()
    read_pending(engine, REGISTRY, reading=reading)
    assert BUDGET <= time.monotonic() - started < BUDGET + 5
    assert (message(engine, warm).status, message(engine, before).status) == ("read", "read")
    failed = message(engine, stuck)
    assert (failed.status, failed.read_attempts) == ("received", 1)
    assert failed.error is not None
    assert failed.error.startswith("reading took longer than 1.5 s")
    assert "LABINTAKE_BATCH_READ_TIMEOUT_SECONDS" in failed.error
    assert (message(engine, after).status, message(engine, after).read_attempts) == (
        "received",
        0,
    )
    # The next batch goes on with the message after it (a new reading process)...
    assert read_pending(engine, REGISTRY, reading=reading) == 1
    assert message(engine, after).status == "read"
    assert read_pending(engine, REGISTRY, reading=reading) == 0  # the stuck one is not taken
    # ... and the isolated reader takes the stuck one alone, and parks it at the last attempt.
    alone = ReadingSandbox(tmp_path, ReadingLimits(), poisoned_plan_message)
    try:
        reader = isolated(engine, alone, attempts=2)
        assert reader.read_next() == 1
    finally:
        alone.stop()
    parked = message(engine, stuck)
    assert (parked.status, parked.read_attempts) == ("error", 2)
    assert [q.message_id for q in error_queue(engine)] == [stuck]
    assert events(engine, stuck) == ["read_failed", "read_error"]


def test_a_small_message_killing_the_reading_process_in_a_batch_is_counted(
    engine: Engine, batch_sandbox: ReadingSandbox
) -> None:
    reading = BatchReading(REGISTRY, ReadingLimits(), batch_sandbox, BUDGET)
    before = new_order(engine, "BEFORE2", "PL3")
    killer = poison(engine, "KILL2", KILLS)
    read_pending(engine, REGISTRY, reading=reading)
    assert message(engine, before).status == "read"
    failed = message(engine, killer)
    assert (failed.status, failed.read_attempts) == ("received", 1)
    assert failed.error is not None
    assert failed.error.startswith("the reading process ended while reading")
    assert batch_sandbox.restarts == 1


def test_a_reading_process_that_died_while_idle_blames_no_message(
    engine: Engine, batch_sandbox: ReadingSandbox
) -> None:
    reading = BatchReading(REGISTRY, ReadingLimits(), batch_sandbox, BUDGET)
    assert read_pending(engine, REGISTRY, reading=reading) == 0
    first = new_order(engine, "IDLE1", "PL4")
    assert read_pending(engine, REGISTRY, reading=reading) == 1
    child = batch_sandbox._child.process
    assert child is not None
    child.kill()  # as the kernel's OOM killer would, between two batches
    child.join(5)
    second = new_order(engine, "IDLE2", "PL5")
    assert read_pending(engine, REGISTRY, reading=reading) == 1
    assert [message(engine, m).status for m in (first, second)] == ["read", "read"]
    assert message(engine, second).read_attempts == 1
