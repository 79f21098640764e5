"""release_verified: verified orders to released + outbox rows, written set-based."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from factories_release import make_orders
from hl7_tree_builder import build_order_message_with_tree
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

import labintake.release.bulk as bulk
import labintake.release.outbox as outbox
from labintake.db import session_scope
from labintake.hl7.order_builder import LisProfile, OutboundOrder
from labintake.models.orders import Order, OrderEvent, OrderTest
from labintake.models.release import OutboxEntry
from labintake.release.bulk import release_verified


def test_each_verified_order_gets_one_outbox_row_its_history_and_the_released_state(
    engine: Engine,
) -> None:
    ids = make_orders(engine, 7)
    assert release_verified(engine, chunk=3) == 7  # three write transactions
    with Session(engine) as session:
        entries = session.exec(select(OutboxEntry).order_by(col(OutboxEntry.order_id))).all()
        orders = session.exec(select(Order).order_by(col(Order.id))).all()
        events = session.exec(select(OrderEvent).where(OrderEvent.action == "released")).all()
    assert [e.order_id for e in entries] == ids
    assert all(e.status == "pending" and e.attempts == 0 for e in entries)
    assert len({e.control_id for e in entries}) == 7
    assert all(o.status == "released" and o.released_at is not None for o in orders)
    assert all(o.row_version == 2 for o in orders)
    by_order = {e.order_id: e for e in events}
    for entry in entries:
        detail = by_order[entry.order_id].detail
        assert detail["control_id"] == entry.control_id
        assert detail["before"] == {"status": "verified"}
        assert entry.message.startswith(b"MSH|^~\\&|")
        assert f"|{entry.control_id}|".encode() in entry.message.split(b"\r")[0]
    assert release_verified(engine) == 0  # nothing left to release


def test_an_order_changed_after_it_was_read_is_skipped_and_stays_as_the_change_left_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_orders(engine, 2)
    real_build = bulk.build_order_message

    def build_while_a_coder_edits(
        order: OutboundOrder, profile: LisProfile, control_id: str, now: datetime
    ) -> bytes:
        if order.order_id == first:  # another transaction changes the order meanwhile
            with session_scope(engine) as session:
                session.execute(
                    update(Order)
                    .where(col(Order.id) == first)
                    .values(status="held", row_version=Order.row_version + 1)
                )
        return real_build(order, profile, control_id, now)

    monkeypatch.setattr(bulk, "build_order_message", build_while_a_coder_edits)
    assert release_verified(engine) == 1
    with Session(engine) as session:
        assert session.get(Order, first).status == "held"  # type: ignore[union-attr]
        assert session.get(Order, second).status == "released"  # type: ignore[union-attr]
        entries = session.exec(select(OutboxEntry)).all()
    assert [e.order_id for e in entries] == [second]


def test_releasing_again_supersedes_the_refused_message_and_normalises_modifiers(
    engine: Engine,
) -> None:
    (order_id,) = make_orders(engine, 1, modifiers=" ga,GA,qw")
    assert release_verified(engine) == 1
    with session_scope(engine) as session:  # the LIS refused it; the rules verified it again
        session.execute(update(OutboxEntry).values(status="refused"))
        session.execute(update(Order).values(status="verified"))
    assert release_verified(engine) == 1
    with Session(engine) as session:
        entries = session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id))).all()
        tests = session.exec(select(OrderTest).where(OrderTest.order_id == order_id)).all()
    assert [e.status for e in entries] == ["superseded", "pending"]
    assert entries[0].control_id != entries[1].control_id
    assert {t.modifiers for t in tests} == {"GA,QW"}
    assert b"GA^^CPT4~QW^^CPT4" in entries[1].message


def test_outbox_message_is_what_the_hl7apy_tree_builder_writes_for_the_order(
    engine: Engine,
) -> None:
    make_orders(engine, 1)
    assert release_verified(engine) == 1
    with Session(engine) as session:
        (entry,) = session.exec(select(OutboxEntry)).all()
        order = session.get(Order, entry.order_id)
        assert order is not None
        tests = session.exec(select(OrderTest).where(OrderTest.order_id == order.id)).all()
        diagnoses = outbox.parts_by_order(session, [entry.order_id])[1][entry.order_id]
        outbound = outbox.outbound_order(order, tests, diagnoses)
    header = entry.message.split(b"\r")[0].decode().split("|")
    sent_at = datetime.strptime(header[6], "%Y%m%d%H%M%S+0000").replace(tzinfo=UTC)
    expected = build_order_message_with_tree(outbound, LisProfile(), entry.control_id, sent_at)
    assert entry.message == expected
