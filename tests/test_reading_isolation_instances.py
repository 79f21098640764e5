"""Isolated readers of several instances on one database: a message is read by one of them
at a time, and the message of an instance that died mid-read is taken over."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.message_shapes import deep_components
from labintake.db import make_engine, utcnow
from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import InterfaceRegistry
from labintake.models import InboundMessage
from labintake.models.release import JobLease
from labintake.reading.isolation import IsolatedReader, lease_name
from labintake.reading.plan import plan_message
from labintake.reading.sandbox import ReadingSandbox, StoredMessage
from tests.test_reading import store

LARGEST = 4096


class SlowSandbox(ReadingSandbox):
    """Reads in this process, slowly, and notes when each read of each message ran."""

    def __init__(self, tmp_path: Path, reads: list[tuple[int, str, float, float]], who: str):
        super().__init__(tmp_path, ReadingLimits())
        self.reads = reads
        self.who = who

    def start(self) -> None:
        pass

    def read(self, message: StoredMessage, timeout: float) -> Any:
        began = time.monotonic()
        time.sleep(0.2)
        plan = plan_message(
            message.message_id,
            message.raw,
            message.charset,
            message.sending_application,
            message.sending_facility,
            InterfaceRegistry(()),
            ReadingLimits(),
        )
        self.reads.append((message.message_id, self.who, began, time.monotonic()))
        return plan


def large(engine: Engine, control_id: str) -> int:
    text = deep_components(2000).replace("SHAPEEHR|SHAPECLINIC", "EHR|CLINIC")
    return store(engine, text.replace("SHAPE1", control_id).encode(), control_id)


def reader(engine: Engine, sandbox: ReadingSandbox, owner: str, **kw: Any) -> IsolatedReader:
    return IsolatedReader(
        engine, sandbox, largest=LARGEST, budget_seconds=5, attempts=3, owner=owner, **kw
    )


def statuses(engine: Engine) -> dict[int, tuple[str, int]]:
    with Session(engine) as session:
        return {m.id: (m.status, m.read_attempts) for m in session.exec(select(InboundMessage))}  # type: ignore[misc]


def leases(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [lease.name for lease in session.exec(select(JobLease))]


def test_two_instances_never_read_one_message_at_once(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    ids = [large(engine, f"BIG{n}") for n in range(6)]
    reads: list[tuple[int, str, float, float]] = []
    engines = [make_engine(database_url), make_engine(database_url)]
    readers = [
        reader(e, SlowSandbox(tmp_path, reads, f"i{n}"), f"instance-{n}")
        for n, e in enumerate(engines)
    ]
    start = threading.Barrier(2)

    def drain(r: IsolatedReader) -> None:
        start.wait()
        while r.read_next():
            pass

    threads = [threading.Thread(target=drain, args=(r,)) for r in readers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for e in engines:
            e.dispose()
    assert sorted(message_id for message_id, *_ in reads) == ids  # each read once
    assert {who for _, who, *_ in reads} == {"i0", "i1"}  # and both instances worked
    assert statuses(engine) == {i: ("read", 1) for i in ids}
    assert leases(engine) == []  # each message's lease dropped once its outcome was written


def test_a_message_taken_by_one_instance_is_passed_by_the_other(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    first, second = large(engine, "BIGA"), large(engine, "BIGB")
    reads: list[tuple[int, str, float, float]] = []
    other_engine = make_engine(database_url)
    try:
        a = reader(engine, SlowSandbox(tmp_path, reads, "a"), "instance-a")
        b = reader(other_engine, SlowSandbox(tmp_path, reads, "b"), "instance-b")
        taken_a, taken_b = a._take(), b._take()
        assert taken_a is not None
        assert taken_b is not None
        assert (taken_a[0].message_id, taken_b[0].message_id) == (first, second)
        assert b._take() is None  # the first is a's, the second its own already
    finally:
        other_engine.dispose()


def test_the_message_of_an_instance_that_died_mid_read_is_taken_over(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    message_id = large(engine, "BIGC")
    reads: list[tuple[int, str, float, float]] = []
    dead = reader(engine, SlowSandbox(tmp_path, reads, "dead"), "instance-dead")
    taken = dead._take()  # taken and counted, then the instance dies: no outcome, no drop
    assert taken is not None
    assert taken[1] == 1
    other_engine = make_engine(database_url)
    try:
        survivor = reader(other_engine, SlowSandbox(tmp_path, reads, "survivor"), "instance-ok")
        assert survivor.read_next() == 0  # the lease is still live
        assert survivor.lease_seconds > 60 + 5  # outlasts the reader's start-up and budget
        with Session(engine) as session:  # ... until it expires
            session.execute(
                update(JobLease)
                .where(JobLease.name == lease_name(message_id))  # type: ignore[arg-type]
                .values(expires_at=utcnow())
            )
            session.commit()
        assert survivor.read_next() == 1
    finally:
        other_engine.dispose()
    assert [(m, who) for m, who, *_ in reads] == [(message_id, "survivor")]
    assert statuses(engine) == {message_id: ("read", 2)}  # the lost attempt counted
    assert leases(engine) == []
