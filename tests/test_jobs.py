"""Scheduled jobs: leases across instances, once-per-day summary, reminders, purge, replies."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from factories_release import add_order, make_orders
from fakes import ShiftedClock
from hl7apy.parser import parse_message
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.config import Settings
from labintake.db import make_engine, session_scope, utcnow
from labintake.jobs import tasks
from labintake.jobs.lease import HeldLease, acquire, run_exclusive
from labintake.jobs.scheduler import SCHEDULE, JobContext, JobService, run_job
from labintake.jobs.service import ReleaseRuntime
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order
from labintake.models.release import JobRun, Notification, OutboxEntry
from labintake.release.stub_lis import StubLis


def test_a_lease_is_held_by_one_instance_until_it_expires(engine: Engine) -> None:
    clock = ShiftedClock()
    assert acquire(engine, "job:x", "instance-a", ttl_seconds=60, now=clock.now())
    assert not acquire(engine, "job:x", "instance-b", ttl_seconds=60, now=clock.now())
    clock.advance(59)
    assert not acquire(engine, "job:x", "instance-b", ttl_seconds=60, now=clock.now())
    assert acquire(engine, "job:x", "instance-a", ttl_seconds=60, now=clock.now())  # renewal
    clock.advance(61)
    assert acquire(engine, "job:x", "instance-b", ttl_seconds=60, now=clock.now())  # gone quiet


def _lease_row(engine: Engine, name: str) -> tuple[str, object]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT owner, expires_at FROM job_lease WHERE name = :n"), {"n": name}
        ).one()
    return str(row[0]), row[1]


def test_a_held_lease_is_written_once_for_many_runs_and_given_back_when_idle(
    engine: Engine,
) -> None:
    lease = HeldLease(engine, "job:held", "instance-a", ttl_seconds=60)
    assert lease.hold()
    first = _lease_row(engine, "job:held")
    for _ in range(5):
        assert lease.hold()
    assert _lease_row(engine, "job:held") == first  # not rewritten for every batch
    other = HeldLease(engine, "job:held", "instance-b", ttl_seconds=60)
    assert not other.hold()
    lease.give_back()
    assert not lease.held
    assert other.hold()  # given back: the other instance takes it at once
    assert not lease.hold()


def test_a_held_lease_is_renewed_once_half_its_time_has_passed(engine: Engine) -> None:
    clock = ShiftedClock()
    lease = HeldLease(engine, "job:renewed", "instance-a", ttl_seconds=60, clock=clock)
    assert lease.hold()
    first = _lease_row(engine, "job:renewed")
    clock.advance(29)
    assert lease.hold()
    assert _lease_row(engine, "job:renewed") == first  # not yet half its time
    clock.advance(2)
    assert lease.hold()
    assert _lease_row(engine, "job:renewed") != first
    clock.advance(35)  # past the first expiry, inside the renewed one
    assert not HeldLease(engine, "job:renewed", "instance-b", ttl_seconds=60, clock=clock).hold()
    clock.advance(30)  # the holder stopped renewing: the lease is free
    assert HeldLease(engine, "job:renewed", "instance-b", ttl_seconds=60, clock=clock).hold()


def test_release_batches_hold_the_release_lease_while_there_is_work(
    engine: Engine, settings: Settings
) -> None:
    make_orders(engine, 5)
    runtime = ReleaseRuntime(settings, engine)
    try:
        assert runtime.release_batch(limit=2) == 2
        assert _lease_row(engine, "job:release_verified")[0] == runtime.jobs.context.owner
        # Another instance's scheduled run finds the lease taken and releases nothing.
        other = JobContext(engine, settings, owner="other-instance")
        assert run_job("release_verified", other) is None
        assert runtime.release_batch(limit=2) == 2
        assert runtime.release_batch(limit=2) == 1
        assert runtime.release_batch(limit=2) == 0  # nothing left: the lease is given back
        make_orders(engine, 1)
        assert run_job("release_verified", other) == 1
    finally:
        runtime.stop()
    with Session(engine) as session:
        assert len(session.exec(select(OutboxEntry)).all()) == 6


def test_two_instances_running_the_same_job_at_once_run_it_once(database_url: str) -> None:
    engines = [make_engine(database_url), make_engine(database_url)]
    runs: list[str] = []
    barrier = threading.Barrier(2)

    def work(name: str) -> int:
        runs.append(name)
        time.sleep(0.3)
        return 1

    def instance(index: int) -> None:
        barrier.wait()
        run_exclusive(engines[index], "job:busy", f"i{index}", lambda: work(f"i{index}"))

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for e in engines:
        e.dispose()
    assert len(runs) == 1


def test_instances_with_the_same_hostname_and_pid_hold_leases_and_claims_apart(
    engine: Engine, settings: Settings
) -> None:
    # Containers on the host network share the hostname and each has its own PID namespace,
    # so two instances' processes can have the same hostname and pid: here, one process.
    with_lis = settings.model_copy(update={"lis_host": "127.0.0.1", "lis_port": 9})
    first, second = JobContext(engine, with_lis), JobContext(engine, with_lis)
    assert acquire(engine, "job:alike", first.owner, ttl_seconds=60)
    assert not acquire(engine, "job:alike", second.owner, ttl_seconds=60)
    senders = [first.sender("lis"), second.sender("lis")]
    try:
        names = {sender.name for sender in senders if sender is not None}
        assert len(names) == 2  # their claim tokens (name#round) never coincide
    finally:
        for sender in senders:
            if sender is not None:
                sender.close()


def test_daily_summary_is_written_once_per_day_across_instances(
    database_url: str, engine: Engine
) -> None:
    make_orders(engine, 3)
    engines = [make_engine(database_url), make_engine(database_url)]
    barrier = threading.Barrier(2)
    results: list[int] = []

    def instance(index: int) -> None:
        barrier.wait()
        results.append(tasks.daily_summary(engines[index], owner=f"i{index}"))

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.append(tasks.daily_summary(engine, owner="late"))
    for e in engines:
        e.dispose()
    assert sorted(results) == [0, 0, 1]
    with Session(engine) as session:
        assert len(session.exec(select(JobRun)).all()) == 1
        (notice,) = session.exec(select(Notification)).all()
        assert notice.kind == "daily_summary"
        assert "3 orders received" in notice.text


def test_follow_up_reminder_once_per_due_date_for_silent_offices(engine: Engine) -> None:
    with session_scope(engine) as session:
        due = add_order(session, status="awaiting_office")
        due.due_at = utcnow() - timedelta(hours=1)
        later = add_order(session, status="awaiting_office")
        later.due_at = utcnow() + timedelta(days=1)
        session.add_all([due, later])
    assert tasks.follow_up_reminders(engine) == 1
    assert tasks.follow_up_reminders(engine) == 0
    with Session(engine) as session:
        (notice,) = session.exec(select(Notification)).all()
    assert notice.order_id == due.id
    assert notice.recipient_role == "coder"


def test_holds_older_than_the_threshold_escalate_to_managers_once(engine: Engine) -> None:
    with session_scope(engine) as session:
        old = add_order(session, status="held", received_at=utcnow() - timedelta(hours=100))
        add_order(session, status="held")
        add_order(session, status="verified", received_at=utcnow() - timedelta(hours=100))
    assert tasks.escalate_old_holds(engine, after_hours=72) == 1
    assert tasks.escalate_old_holds(engine, after_hours=72) == 0
    with Session(engine) as session:
        (notice,) = session.exec(select(Notification)).all()
    assert notice.order_id == old.id
    assert notice.recipient_role == "manager"


def test_purge_drops_old_raw_messages_and_keeps_status_and_orders(engine: Engine) -> None:
    with session_scope(engine) as session:
        old = add_order(session, received_at=utcnow() - timedelta(days=400))
        new = add_order(session)
        old_message = session.get(InboundMessage, old.message_id)
        assert old_message is not None
        old_message.received_at = utcnow() - timedelta(days=400)
        session.add(old_message)
    assert tasks.purge_raw_messages(engine, retention_days=365) == 1
    assert tasks.purge_raw_messages(engine, retention_days=365) == 0
    with Session(engine) as session:
        purged = session.get(InboundMessage, old.message_id)
        kept = session.get(InboundMessage, new.message_id)
        assert purged is not None
        assert kept is not None
        assert purged.raw is None
        assert purged.raw_purged_at is not None
        assert purged.status == "read"
        assert kept.raw is not None
        assert session.get(Order, old.id) is not None


def test_purge_drops_raw_messages_in_short_transactions_oldest_first(engine: Engine) -> None:
    """Each batch its own transaction, found through the index of kept messages by arrival
    and dropped by primary key (on SQLite a write holds the lock intake's ACKs wait for)."""
    with session_scope(engine) as session:
        orders = [add_order(session) for _ in range(6)]
        for days, order in zip((400, 500, 600, 700, 800, 1), orders, strict=True):
            message = session.get(InboundMessage, order.message_id)
            assert message is not None
            message.received_at = utcnow() - timedelta(days=days)
    commits: list[int] = []
    statements: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if "inbound_message" in statement and statement.split()[0] in ("SELECT", "UPDATE"):
            statements.append((statement, params))

    event.listen(engine, "commit", lambda _conn: commits.append(1))
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert tasks.purge_raw_messages(engine, retention_days=365, batch=2) == 5
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(commits) == 3  # 2 + 2 + 1
    with Session(engine) as session:
        kept = [m.received_at for m in session.exec(select(InboundMessage)) if m.raw]
    assert len(kept) == 1
    assert kept[0] > utcnow() - timedelta(days=2)
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            cursor = connection.connection.cursor()
            plans = {
                statement.split()[0]: [
                    r[-1] for r in cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)
                ]
                for statement, params in statements
            }
        assert plans["SELECT"] == [
            "SEARCH inbound_message USING INDEX ix_inbound_raw_kept (received_at<?)"
        ]
        assert plans["UPDATE"] == ["SEARCH inbound_message USING INTEGER PRIMARY KEY (rowid=?)"]


def test_scheduler_keeps_its_jobs_in_the_database_and_runs_delivery(
    engine: Engine, settings: Settings
) -> None:
    make_orders(engine, 3)
    with StubLis() as lis:
        settings = settings.model_copy(update={"lis_host": "127.0.0.1", "lis_port": lis.port})
        service = JobService(settings, engine)
        service.start()
        try:
            with engine.connect() as conn:
                stored = {row[0] for row in conn.execute(text("SELECT id FROM apscheduler_jobs"))}
            assert stored == set(SCHEDULE)
            assert run_job("release_verified") == 3
            assert run_job("deliver") == 3
        finally:
            service.shutdown()
    assert len(lis.accepted()) == 3


def test_rejected_order_gets_an_order_response_when_its_interface_wants_one(
    engine: Engine, settings: Settings
) -> None:
    with session_scope(engine) as session:
        order = add_order(session, status="rejected")
        message = session.get(InboundMessage, order.message_id)
        assert message is not None
        message.interface = "north-clinic"
        message.message_type = "OML^O21"
        session.add(message)
        add_order(session, status="cancelled")  # its interface wants no replies
    with StubLis() as placer:
        settings = settings.model_copy(
            update={"placer_replies": {"north-clinic": f"127.0.0.1:{placer.port}"}}
        )
        context = JobContext(engine=engine, settings=settings)
        try:
            assert run_job("placer_replies", context) == 1
            assert run_job("placer_replies", context) == 0  # once per order
            assert run_job("deliver", context) == 1
        finally:
            context.close()
    (received,) = placer.received
    reply = parse_message(received.raw.decode().strip("\r"), find_groups=False)
    assert reply.msh.msh_9.to_er7() == "ORL^O22^ORL_O22"
    assert reply.msa.msa_2.to_er7() == message.control_id
    orc = next(s for s in reply.children if s.name == "ORC")
    assert orc.orc_1.to_er7() == "UA"
    with Session(engine) as session:
        entry = session.exec(select(OutboxEntry)).one()
        assert entry.kind == "reply"
        assert entry.status == "delivered"
