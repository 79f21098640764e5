"""Delivery to a real MLLP LIS peer (the stub LIS, in this process, on port 0), and to an
in-memory one; leases and backoffs are crossed by moving a clock, not by waiting."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from factories_release import add_order, make_orders
from fakes import MemoryTransport, ShiftedClock, unreachable
from hl7apy.parser import parse_message
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from labintake import lifecycle
from labintake.db import make_engine, session_scope, utcnow
from labintake.hl7.ack_reply import AckReply
from labintake.models.orders import Finding, Order, OrderEvent, Verification
from labintake.models.release import Notification, OutboxEntry
from labintake.release.bulk import release_verified
from labintake.release.connection import DeliveryFailure, Endpoint
from labintake.release.delivery import Outcome, RetryPolicy, claim_due, resend_dead_letter
from labintake.release.outbox import enqueue_release
from labintake.release.outcomes import record_outcomes
from labintake.release.sender import Sender, SenderOptions, deliver_until_idle
from labintake.release.stub_lis import ReceivedMessage, StubLis
from labintake.statuses import DeliveryOutcome, OrderStatus

FAST = RetryPolicy(max_attempts=50, base_seconds=0.01, cap_seconds=0.05)


def make_sender(
    engine: Engine,
    lis: StubLis,
    policy: RetryPolicy = FAST,
    ack_timeout: float = 2.0,
    clock: ShiftedClock | None = None,
    **options: float,
) -> Sender:
    endpoint = Endpoint("127.0.0.1", lis.port, connect_timeout=1.0, ack_timeout=ack_timeout)
    return Sender(
        engine,
        endpoint,
        policy,
        options=SenderOptions(**options),  # type: ignore[arg-type]
        clock=clock or ShiftedClock(),
    )


def wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def statuses(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.exec(select(Order.status, func.count()).group_by(Order.status)).all()
    return {str(s): int(n) for s, n in rows}


def test_verified_orders_reach_the_lis_once_and_become_delivered(engine: Engine) -> None:
    make_orders(engine, 5)
    assert release_verified(engine) == 5
    with StubLis() as lis:
        sender = make_sender(engine, lis)
        deliver_until_idle(sender)
        sender.close()
    assert statuses(engine) == {"delivered": 5}
    counts = lis.counts()
    assert len(counts) == 5
    assert set(counts.values()) == {1}
    with Session(engine) as session:
        entries = session.exec(select(OutboxEntry)).all()
        assert {e.control_id for e in entries} == set(counts)
        assert all(e.status == "delivered" and e.ack_code == "AA" for e in entries)
        orders = session.exec(select(Order)).all()
        assert all(o.delivered_at is not None and o.released_at is not None for o in orders)


def test_outbound_message_parses_with_hl7apy_and_carries_resolved_codes(engine: Engine) -> None:
    with session_scope(engine) as session:
        order = add_order(session, status="held", tests=2)
        entry = enqueue_release(session, order, actor="coder1", modifiers=("GA",))
    with StubLis() as lis:
        sender = make_sender(engine, lis)
        deliver_until_idle(sender)
        sender.close()
    (received,) = lis.received
    assert received.control_id == entry.control_id
    message = parse_message(received.raw.decode("utf-8").strip("\r"), find_groups=False)
    assert message.msh.msh_9.to_er7() == "ORM^O01^ORM_O01"
    assert message.msh.msh_10.to_er7() == entry.control_id
    obr = [s for s in message.children if s.name == "OBR"]
    assert [s.obr_4.to_er7().split("^")[0] for s in obr] == ["LIPID", "A1C"]
    assert obr[0].obr_4.to_er7().split("^")[3:6] == ["24331-1", "Lipid panel", "LN"]
    dg1_codes = {s.dg1_3.to_er7().split("^")[0] for s in message.children if s.name == "DG1"}
    assert dg1_codes == {"E78.5", "E11.9"}  # the inactive R99 is not sent
    ft1 = [s for s in message.children if s.name == "FT1"]
    assert [s.ft1_25.to_er7().split("^")[0] for s in ft1] == ["80061", "83036"]
    assert all(s.ft1_26.to_er7().split("^")[0] == "GA" for s in ft1)
    with Session(engine) as session:
        events = session.exec(select(OrderEvent).where(OrderEvent.action == "released")).all()
        assert events[0].actor == "coder1"
        assert events[0].detail["modifiers"] == ["GA"]


def test_lis_down_for_a_while_then_back_gets_every_order_exactly_once(engine: Engine) -> None:
    lis = StubLis().start()
    port = lis.port
    lis.stop()  # the LIS goes down before anything is sent
    make_orders(engine, 12)
    release_verified(engine)
    clock = ShiftedClock()
    sender = make_sender(engine, lis, clock=clock)
    for _ in range(5):
        sender.deliver_due()
        clock.advance(0.06)  # past the backoff
    assert statuses(engine) == {"released": 12}
    with Session(engine) as session:
        attempts = session.exec(select(OutboxEntry.attempts)).all()
    assert sorted(attempts) == [0] * 7 + [1] * 5  # one connection attempt, one message, a round
    lis = StubLis(port=port).start()  # back on the same address
    try:
        wait_until(
            lambda: deliver_until_idle(sender) >= 0 and statuses(engine) == {"delivered": 12}
        )
    finally:
        sender.close()
        lis.stop()
    counts = lis.counts()
    assert len(counts) == 12
    assert set(counts.values()) == {1}


def test_lis_answering_ae_holds_the_order_with_the_lis_error_text(engine: Engine) -> None:
    def refuse(message: ReceivedMessage) -> tuple[str, str]:
        return ("AE", f"Unknown order code {message.tests[0]}")

    [order_id] = make_orders(engine, 1)
    release_verified(engine)
    with StubLis(responder=refuse) as lis:
        sender = make_sender(engine, lis)
        deliver_until_idle(sender)
        sender.close()
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        assert order.status == "held"
        finding = session.exec(select(Finding).where(Finding.order_id == order_id)).one()
        assert finding.code == "LIS_REJECTED"
        assert finding.severity == "hold"
        assert "Unknown order code LIPID" in finding.message
        entry = session.exec(select(OutboxEntry)).one()
        assert entry.status == "refused"
        assert entry.ack_code == "AE"
        assert "Unknown order code LIPID" in (entry.last_error or "")
    # A coder fixes it and releases again: a new message, the refused one superseded.
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        again = enqueue_release(session, order, actor="coder1")
    with Session(engine) as session:
        rows = session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id))).all()
        assert [r.status for r in rows] == ["superseded", "pending"]
        assert rows[1].control_id == again.control_id != rows[0].control_id


def test_slow_lis_times_out_and_the_retry_keeps_the_control_id(engine: Engine) -> None:
    [order_id] = make_orders(engine, 1)
    release_verified(engine)
    clock = ShiftedClock()
    with StubLis(delay_seconds=0.6) as lis:
        sender = make_sender(engine, lis, ack_timeout=0.2, clock=clock)
        assert sender.deliver_due() == 1  # handled: no answer in time, put back for retry
        with Session(engine) as session:
            entry = session.exec(select(OutboxEntry)).one()
            assert entry.status == "pending"
            assert entry.attempts == 1
            assert "no acknowledgement" in (entry.last_error or "")
        wait_until(lambda: len(lis.received) == 1)  # the slow LIS did take the first copy
        lis.delay_seconds = 0.0
        clock.advance(0.06)  # past the backoff
        wait_until(lambda: deliver_until_idle(sender) >= 0 and statuses(engine) == {"delivered": 1})
        sender.close()
    counts = lis.counts()
    assert list(counts.values()) == [2]  # the same control id, sent twice
    assert len(lis.accepted()) == 1  # and taken once: the LIS recognised the repeat
    with Session(engine) as session:
        delivered = session.exec(
            select(OrderEvent).where(
                OrderEvent.order_id == order_id, OrderEvent.action == "delivered"
            )
        ).all()
        assert len(delivered) == 1


def test_gives_up_after_max_attempts_then_resend_delivers_same_control_id(engine: Engine) -> None:
    lis = StubLis().start()
    port = lis.port
    lis.stop()
    [order_id] = make_orders(engine, 1)
    release_verified(engine)
    clock = ShiftedClock()
    sender = make_sender(
        engine,
        lis,
        policy=RetryPolicy(max_attempts=2, base_seconds=0.01, cap_seconds=0.01),
        clock=clock,
    )
    sender.deliver_due()
    clock.advance(0.03)  # past the backoff
    sender.deliver_due()
    with Session(engine) as session:
        entry = session.exec(select(OutboxEntry)).one()
        assert entry.status == "dead"
        assert entry.attempts == 2
        notice = session.exec(select(Notification)).one()
        assert notice.kind == "dead_letter"
        assert entry.control_id in notice.text
    with session_scope(engine) as session:
        resend_dead_letter(session, entry.id or 0, actor="manager1")
    lis = StubLis(port=port).start()
    try:
        deliver_until_idle(sender)
    finally:
        sender.close()
        lis.stop()
    assert list(lis.counts()) == [entry.control_id]
    assert statuses(engine) == {"delivered": 1}
    with Session(engine) as session:
        assert session.get(Order, order_id).delivered_at is not None  # type: ignore[union-attr]


def test_one_patients_orders_keep_their_order_and_others_are_not_blocked(engine: Engine) -> None:
    silent_once: set[str] = set()
    first_of_patient: list[str] = []

    def answer(message: ReceivedMessage) -> tuple[str, str] | None:
        if message.patient_id == "MRN-SAME" and not first_of_patient:
            first_of_patient.append(message.control_id)
        if (
            message.control_id == (first_of_patient or [""])[0]
            and message.control_id not in silent_once
        ):
            silent_once.add(message.control_id)
            return None  # the LIS stays silent on the patient's first order, once
        return ("AA", "")

    with session_scope(engine) as session:
        same = [add_order(session, mrn="MRN-SAME").id for _ in range(3)]
        others = [add_order(session).id for _ in range(4)]
    release_verified(engine)
    clock = ShiftedClock()
    with StubLis(responder=answer) as lis:
        # A backoff far longer than the rounds below take, even on a loaded machine.
        sender = make_sender(
            engine, lis, policy=RetryPolicy(50, 60.0, 60.0), ack_timeout=0.2, clock=clock
        )
        for _ in range(6):
            sender.deliver_due()
        with Session(engine) as session:
            by_id = {o.id: o.status for o in session.exec(select(Order)).all()}
        # The patient's first order waits out its backoff; unrelated orders went through.
        assert all(by_id[i] == "delivered" for i in others)
        assert all(by_id[i] == "released" for i in same)
        clock.advance(61.0)  # past the backoff
        deliver_until_idle(sender)
        sender.close()
    assert statuses(engine) == {"delivered": 7}
    arrivals = [m.placer_order for m in lis.received if m.patient_id == "MRN-SAME"]
    with Session(engine) as session:
        placers = [session.get(Order, i).placer_order_number for i in same]  # type: ignore[union-attr]
    assert arrivals == placers


def test_sender_dying_mid_delivery_is_taken_over_without_losing_or_doubling(
    engine: Engine, database_url: str
) -> None:
    class Crash(Exception):
        pass

    make_orders(engine, 20)
    release_verified(engine)
    with StubLis() as lis:
        # A lease long enough that a slow machine never cuts the first round short.
        first = make_sender(engine, lis, lease_seconds=120.0, commit_every=8)

        def crash(index: int) -> None:
            if index == 11:  # 8 outcomes committed, 4 more sent and acknowledged, then death
                raise Crash

        first.after_exchange = crash
        with pytest.raises(Crash):
            first.deliver_due()
        first.close()
        assert statuses(engine) == {"delivered": 8, "released": 12}
        other_engine = make_engine(database_url)  # a restarted service: new engine
        try:
            still_claimed = make_sender(other_engine, lis)
            assert still_claimed.deliver_due() == 0  # the dead sender's claims hold...
            still_claimed.close()
            later = ShiftedClock()
            later.advance(121.0)  # ...until they expire
            second = make_sender(other_engine, lis, clock=later)
            deliver_until_idle(second)
            second.close()
        finally:
            other_engine.dispose()
    assert statuses(engine) == {"delivered": 20}
    counts = lis.counts()
    assert len(counts) == 20
    assert len(lis.accepted()) == 20  # each order taken once by the LIS
    assert sorted(counts.values()) == [1] * 16 + [2] * 4  # the 4 unrecorded were resent
    with Session(engine) as session:
        delivered_events = session.exec(
            select(OrderEvent.order_id, func.count())
            .where(OrderEvent.action == "delivered")
            .group_by(OrderEvent.order_id)
        ).all()
    assert len(delivered_events) == 20
    assert all(n == 1 for _, n in delivered_events)


def test_two_instances_releasing_and_sending_concurrently_deliver_each_order_once(
    database_url: str, engine: Engine
) -> None:
    make_orders(engine, 120)
    engines = [make_engine(database_url), make_engine(database_url)]
    errors: list[BaseException] = []
    with StubLis() as lis:
        senders = [make_sender(e, lis, batch_size=10) for e in engines]

        def instance(index: int) -> None:
            try:
                release_verified(engines[index], limit=60 + index * 60)
                for _ in range(50):
                    deliver_until_idle(senders[index])
                    if statuses(engines[index]).get("delivered") == 120:
                        return
                    time.sleep(0.02)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=instance, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for sender in senders:
            sender.close()
    for e in engines:
        e.dispose()
    assert not errors, errors
    assert statuses(engine) == {"delivered": 120}
    counts = lis.counts()
    assert len(counts) == 120
    assert set(counts.values()) == {1}
    with Session(engine) as session:
        per_order = session.exec(
            select(OutboxEntry.order_id, func.count()).group_by(OutboxEntry.order_id)
        ).all()
    assert len(per_order) == 120
    assert all(n == 1 for _, n in per_order)


def test_delivery_over_tls_to_a_lis_with_its_own_ca(engine: Engine, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_context)
    ca_file = tmp_path / "lis-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    make_orders(engine, 3)
    release_verified(engine)
    with StubLis(ssl_context=server_context) as lis:
        endpoint = Endpoint("127.0.0.1", lis.port, tls=True, tls_ca=ca_file, ack_timeout=5.0)
        sender = Sender(engine, endpoint, FAST)
        deliver_until_idle(sender)
        sender.close()
        untrusted = Sender(engine, Endpoint("127.0.0.1", lis.port, tls=True), FAST)
        make_orders(engine, 1)
        release_verified(engine)
        untrusted.deliver_due()  # a LIS whose certificate we cannot verify gets nothing
        untrusted.close()
    assert len(lis.accepted()) == 3
    with Session(engine) as session:
        waiting = session.exec(select(OutboxEntry).where(OutboxEntry.status == "pending")).one()
    assert "certificate" in (waiting.last_error or "").lower()


def test_service_killed_mid_delivery_loses_nothing_and_the_lis_takes_each_order_once(
    engine: Engine, database_url: str
) -> None:
    make_orders(engine, 60)
    release_verified(engine)
    with StubLis(delay_seconds=0.03) as lis:
        script = (
            "from labintake.db import make_engine\n"
            "from labintake.release.connection import Endpoint\n"
            "from labintake.release.sender import Sender, SenderOptions, deliver_until_idle\n"
            f"engine = make_engine({database_url!r})\n"
            f"endpoint = Endpoint('127.0.0.1', {lis.port}, ack_timeout=5.0)\n"
            "options = SenderOptions(commit_every=10, lease_seconds=1.0)\n"
            "deliver_until_idle(Sender(engine, endpoint, options=options))\n"
        )
        process = subprocess.Popen([sys.executable, "-c", script])
        try:
            wait_until(lambda: len(lis.received) >= 25, seconds=60)
        finally:
            os.kill(process.pid, signal.SIGKILL)  # no shutdown, no last commit
            process.wait(timeout=10)
        lis.delay_seconds = 0.0
        # The dead sender's last message may still be in the LIS's hands: let it finish.
        wait_until(lambda: lis.open_connections == 0)
        partly = statuses(engine)
        assert partly.get("released", 0) > 0  # it really died mid-delivery
        restarted = make_engine(database_url)
        try:
            later = ShiftedClock()
            later.advance(1.1)  # its claims expire
            sender = make_sender(restarted, lis, clock=later)
            deliver_until_idle(sender)
            sender.close()
        finally:
            restarted.dispose()
    assert statuses(engine) == {"delivered": 60}
    counts = lis.counts()
    assert len(counts) == 60
    assert len(lis.accepted()) == 60
    assert sum(counts.values()) - 60 <= 10  # repeats: at most the uncommitted tail
    with Session(engine) as session:
        events = session.exec(
            select(OrderEvent.order_id, func.count())
            .where(OrderEvent.action == "delivered")
            .group_by(OrderEvent.order_id)
        ).all()
    assert len(events) == 60
    assert all(n == 1 for _, n in events)


def _delivered_events(engine: Engine) -> dict[int, dict[str, object]]:
    with Session(engine) as session:
        rows = session.exec(
            select(OrderEvent.order_id, OrderEvent.detail).where(OrderEvent.action == "delivered")
        ).all()
    return {order_id: dict(detail) for order_id, detail in rows}


def test_delivered_events_bound_from_the_claim_say_what_the_outbox_returned(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender passes its claims, so the "delivered" events are bound before the write;
    they are the events the outbox's own answer would make. A message whose row changed
    since the claim gets its event from the outbox's answer instead."""
    ids = make_orders(engine, 4)
    release_verified(engine)
    with engine.begin() as conn:  # one message tried twice before
        conn.execute(text("UPDATE outbox SET attempts = 2 WHERE order_id = :o"), {"o": ids[0]})
    transport = MemoryTransport(responder=lambda _m, control_id: AckReply("AA", control_id, ""))
    sender = Sender(engine, None, FAST, transport=transport, clock=ShiftedClock())

    def bound_inside(*_args: object) -> None:
        raise AssertionError("the delivered events were bound inside the transaction")

    with monkeypatch.context() as patch:
        patch.setattr(lifecycle, "insert_events", bound_inside)
        assert sender.deliver_due() == 4
    with Session(engine) as session:
        control = dict(session.exec(select(OutboxEntry.order_id, OutboxEntry.control_id)).all())
    expected = {
        order_id: {
            "before": {"status": "released"},
            "after": {"status": "delivered"},
            "control_id": control[order_id],
            "ack_code": "AA",
            "attempts": 3 if order_id == ids[0] else 1,
        }
        for order_id in ids
    }
    assert _delivered_events(engine) == expected
    # A claim that no longer says what the row holds: the outbox's answer wins.
    more = make_orders(engine, 1)
    release_verified(engine)
    [claim] = claim_due(engine, "stale", limit=10)
    with engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET attempts = 7 WHERE id = :i"), {"i": claim.id})
    record_outcomes(
        engine,
        "stale",
        [Outcome(claim.id, DeliveryOutcome.DELIVERED, ack_code="CA")],
        FAST,
        claims={claim.id: claim},
    )
    assert claim.attempts == 0
    assert _delivered_events(engine)[more[0]]["attempts"] == 8
    assert _delivered_events(engine)[more[0]]["ack_code"] == "CA"


def test_a_slow_round_stops_inside_its_claim_lease_and_gives_the_rest_back(
    engine: Engine,
) -> None:
    make_orders(engine, 6)
    release_verified(engine)
    with StubLis(delay_seconds=0.15) as lis:
        sender = make_sender(engine, lis, lease_seconds=0.5)
        handled = sender.deliver_due()
        assert 1 <= handled < 6  # stopped after about a quarter of a second
        with Session(engine) as session:
            claimed = session.exec(
                select(OutboxEntry).where(col(OutboxEntry.claimed_by).is_not(None))
            ).all()
        assert claimed == []  # the untried ones are free for any sender at once
        deliver_until_idle(sender)
        sender.close()
    assert statuses(engine) == {"delivered": 6}
    assert set(lis.counts().values()) == {1}


def _attempt_times(engine: Engine) -> list[tuple[int, object]]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxEntry.attempts, OutboxEntry.next_attempt_at)).all()
    return [(int(a), t) for a, t in rows]


def test_backoff_grows_with_each_failed_attempt_and_is_crossed_by_the_clock(
    engine: Engine,
) -> None:
    """In memory: an unreachable LIS, then an answering one; no socket, no waiting."""
    make_orders(engine, 1)
    release_verified(engine)
    clock = ShiftedClock()
    transport = MemoryTransport(responder=unreachable)
    policy = RetryPolicy(max_attempts=10, base_seconds=30.0, cap_seconds=240.0)
    sender = Sender(engine, None, policy, transport=transport, clock=clock)
    waits = []
    for attempt in range(1, 5):
        assert sender.deliver_due() == 1
        assert sender.deliver_due() == 0  # backing off: not due yet
        ((attempts, due_at),) = _attempt_times(engine)
        assert attempts == attempt
        wait = (due_at - clock.now()).total_seconds()  # type: ignore[operator]
        step = min(240.0, 30.0 * 2 ** (attempt - 1))
        assert step / 2 - 1 <= wait <= step  # half the step fixed, half jitter
        waits.append(wait)
        clock.advance(wait + 0.01)
    assert waits[-1] > waits[0]
    transport.responder = lambda _m, control_id: AckReply("AA", control_id, "")
    assert deliver_until_idle(sender) == 1
    assert statuses(engine) == {"delivered": 1}
    assert len(transport.sent) == 5
    assert len(set(transport.sent)) == 1  # every retry carried the same control id


def test_an_unreachable_lis_costs_one_attempt_a_round_and_pauses_the_sender(
    engine: Engine,
) -> None:
    """Nothing can be sent: the message tried counts an attempt, the rest of the round goes
    back untouched, and the sender waits (doubling, as the retry policy) before connecting
    again. A long outage does not turn the backlog into dead letters."""
    make_orders(engine, 30)
    release_verified(engine)
    clock = ShiftedClock()
    transport = MemoryTransport(responder=unreachable)
    policy = RetryPolicy(max_attempts=3, base_seconds=10.0, cap_seconds=80.0)
    sender = Sender(engine, None, policy, transport=transport, clock=clock)
    # Each pause the fixed half of the policy's step, doubling, at most 30 s.
    for pause in [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]:
        assert sender.deliver_due() == 1  # one connection attempt, one message tried
        assert sender.deliver_due() == 0  # paused: no claim, no connection attempt
        clock.advance(pause - 0.5)
        assert sender.deliver_due() == 0
        clock.advance(0.6)
    assert len(transport.sent) == 6
    with Session(engine) as session:
        rows = session.exec(select(OutboxEntry.status, OutboxEntry.attempts)).all()
    assert {status for status, _ in rows} == {"pending"}  # no dead letter
    assert sorted(attempts for _, attempts in rows) == [0] * 24 + [1] * 6
    transport.responder = lambda _m, control_id: AckReply("AA", control_id, "")
    clock.advance(80.0)
    assert deliver_until_idle(sender) == 30
    assert statuses(engine) == {"delivered": 30}


def test_a_failure_on_an_open_connection_counts_one_attempt_and_gives_the_rest_back(
    engine: Engine,
) -> None:
    make_orders(engine, 5)
    release_verified(engine)

    def reset_on_third(_message: bytes, control_id: str) -> AckReply:
        if len(transport.sent) == 3:
            raise DeliveryFailure("connection failed: reset by peer")
        return AckReply("AA", control_id, "")

    transport = MemoryTransport(responder=reset_on_third)
    sender = Sender(engine, None, FAST, transport=transport, clock=ShiftedClock())
    assert sender.deliver_due() == 3  # two delivered, the third put back for a retry
    with Session(engine) as session:
        entries = session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id))).all()
    assert [(e.status, e.attempts, e.claimed_by) for e in entries] == [
        ("delivered", 1, None),
        ("delivered", 1, None),
        ("pending", 1, None),
        ("pending", 0, None),  # untried: given back untouched
        ("pending", 0, None),
    ]


def test_claiming_from_a_large_backlog_stays_fast_without_table_statistics(
    engine: Engine,
) -> None:
    """A burst fills the outbox faster than statistics are gathered; claims must not slow
    down with the backlog (one claim used to take minutes on PostgreSQL)."""
    [order_id] = make_orders(engine, 1)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE outbox"))  # statistics of an empty table
    now = utcnow()
    backlog = 3000
    rows = [
        {
            "order_id": order_id,
            "kind": "release",
            "destination": "lis",
            # every tenth message is a patient's second order: it must wait its turn
            "sequence_key": f"CLINIC|P{i - 1 if i % 10 == 1 else i}",
            "control_id": f"C{i:07d}",
            "message_type": "ORM^O01",
            "message": b"MSH|",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "ack_code": "",
            "created_by": "system",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(backlog)
    ]
    with engine.begin() as conn:
        conn.execute(insert(OutboxEntry), rows)
    started = time.perf_counter()
    claimed = claim_due(engine, "t#1", limit=200)
    seconds = time.perf_counter() - started
    assert len(claimed) == 200
    assert [c.id for c in claimed] == sorted(c.id for c in claimed)
    numbers = {int(c.control_id[1:]) for c in claimed}
    assert not any(n % 10 == 1 for n in numbers)  # second orders wait behind the first
    assert seconds < 5.0, f"one claim took {seconds:.1f} s"


def test_one_round_of_mixed_outcomes_is_recorded_each_as_its_own(engine: Engine) -> None:
    """Refused, refused for an order cancelled meanwhile, retried, given up, given back, and
    one whose claim another sender holds now: recorded together, each as on its own."""
    ids = make_orders(engine, 6)
    release_verified(engine)
    claims = claim_due(engine, "round-1", limit=10)
    assert len(claims) == 6
    e = [c.id for c in claims]
    by_entry = {}
    with session_scope(engine) as session:
        for entry in session.exec(select(OutboxEntry)):
            by_entry[entry.id] = entry.order_id
        session.execute(text("UPDATE outbox SET attempts = 1 WHERE id = :i"), {"i": e[3]})
        session.execute(text("UPDATE outbox SET claimed_by = 'other' WHERE id = :i"), {"i": e[5]})
        cancelled = by_entry[e[1]]
        lifecycle.transition_many(
            session, [cancelled], OrderStatus.CANCELLED, lifecycle.OrderEventKind.CANCELLED
        )
    now = utcnow()
    policy = RetryPolicy(max_attempts=2, base_seconds=10.0, cap_seconds=10.0)
    delivered = record_outcomes(
        engine,
        "round-1",
        [
            Outcome(e[0], DeliveryOutcome.REFUSED, "AE", "Unknown order code LIPID"),
            Outcome(e[1], DeliveryOutcome.REFUSED, "AR", ""),
            Outcome(e[2], DeliveryOutcome.RETRY, text="no acknowledgement within 1 s"),
            Outcome(e[3], DeliveryOutcome.RETRY, text="connection failed"),
            Outcome(e[4], DeliveryOutcome.SKIPPED),
            Outcome(e[5], DeliveryOutcome.RETRY, text="not ours any more"),
            Outcome(e[0], DeliveryOutcome.RETRY, text="a second answer for the same message"),
        ],
        policy,
        now=now,
    )
    assert delivered == 0
    with Session(engine) as session:
        rows = {r.id: r for r in session.exec(select(OutboxEntry))}
        got = [
            (r.status, r.attempts, r.ack_code, r.last_error, r.claimed_by)
            for r in (rows[i] for i in e)
        ]
        assert got == [
            ("refused", 1, "AE", "Unknown order code LIPID", None),
            ("refused", 1, "AR", "answered AR", None),
            ("pending", 1, "", "no acknowledgement within 1 s", None),
            ("dead", 2, "", "connection failed", None),
            ("pending", 0, "", None, None),
            ("pending", 0, "", None, "other"),
        ]
        retry_at = rows[e[2]].next_attempt_at
        assert retry_at is not None
        assert 5.0 <= (retry_at - now).total_seconds() <= 10.0
        assert rows[e[3]].dead_at == now
        orders = {o.id: o.status for o in session.exec(select(Order))}
        assert [orders[by_entry[i]] for i in e] == [
            "held",
            "cancelled",
            "released",
            "released",
            "released",
            "released",
        ]
        finding = session.exec(select(Finding)).one()
        assert finding.order_id == by_entry[e[0]]
        assert (finding.code, finding.severity, finding.location, finding.state) == (
            "LIS_REJECTED",
            "hold",
            "MSA",
            "open",
        )
        assert finding.message == "The LIS answered AE: Unknown order code LIPID"
        assert finding.reference == {"control_id": claims[0].control_id, "ack_code": "AE"}
        verification = session.get(Verification, finding.verification_id)
        assert verification is not None
        assert (verification.order_id, verification.rules_version, verification.outcome) == (
            by_entry[e[0]],
            "lis-ack",
            "held",
        )
        refused = session.exec(select(OrderEvent).where(OrderEvent.action == "lis_refused")).one()
        assert refused.order_id == by_entry[e[0]]
        assert refused.detail == {
            "before": {"status": "released"},
            "after": {"status": "held"},
            "control_id": claims[0].control_id,
            "ack_code": "AE",
            "reason": "Unknown order code LIPID",
        }
        notice = session.exec(select(Notification)).one()
        assert (notice.kind, notice.recipient_role, notice.order_id) == (
            "dead_letter",
            "manager",
            by_entry[e[3]],
        )
        assert notice.text == (
            f"Message {claims[3].control_id} to lis gave up after 2 attempts: connection failed"
        )
        assert notice.dedupe_key == f"dead:{claims[3].control_id}:2"
    assert sorted(ids) == sorted(by_entry.values())
