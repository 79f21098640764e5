"""The order lifecycle: the transitions table, one order's move and a set's, on both databases."""

from __future__ import annotations

import pytest
from factories_release import add_order
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake import lifecycle
from labintake.db import session_scope
from labintake.errors import ConcurrentChangeError, WorkflowError
from labintake.lifecycle import IllegalTransitionError, OrderEventKind
from labintake.models.orders import Order, OrderEvent
from labintake.statuses import QUEUE_STATUSES, RELEASABLE, REVERIFIABLE, OrderStatus

S = OrderStatus
E = OrderEventKind


def _add(engine: Engine, *statuses: OrderStatus) -> list[int]:
    with session_scope(engine) as session:
        orders = [add_order(session, status=status) for status in statuses]
        return [o.id for o in orders if o.id is not None]


def _orders(engine: Engine, ids: list[int]) -> list[Order]:
    with Session(engine) as session:
        return list(session.exec(select(Order).where(col(Order.id).in_(ids)).order_by(Order.id)))


def _events(engine: Engine, ids: list[int]) -> list[OrderEvent]:
    with Session(engine) as session:
        query = select(OrderEvent).where(col(OrderEvent.order_id).in_(ids))
        return list(session.exec(query.order_by(col(OrderEvent.id))))


def test_the_table_follows_the_contract_and_the_status_groups() -> None:
    # received -> verified -> released -> delivered; received -> held -> awaiting -> released
    for move in [(S.RECEIVED, S.VERIFIED), (S.VERIFIED, S.RELEASED), (S.RELEASED, S.DELIVERED)]:
        assert move in lifecycle.TRANSITIONS
    for status in RELEASABLE:
        assert lifecycle.allowed(status, S.RELEASED, E.RELEASED)
    assert not lifecycle.allowed(S.RECEIVED, S.RELEASED, E.RELEASED)  # never unverified
    for status in QUEUE_STATUSES:
        assert lifecycle.allowed(status, S.REJECTED, E.REJECTED)
    for status in REVERIFIABLE:
        assert lifecycle.allowed(status, S.VERIFIED, E.RE_VERIFIED)
    assert not lifecycle.allowed(S.DELIVERED, S.VERIFIED, E.RE_VERIFIED)
    assert not lifecycle.allowed(S.CANCELLED, S.CANCELLED, E.CANCELLED)
    assert not lifecycle.allowed(S.VERIFIED, S.RELEASED, E.DELIVERED)  # the kind counts too
    assert lifecycle.sources_of(S.DELIVERED, E.DELIVERED) == {S.RELEASED}


def test_a_held_verdict_keeps_an_order_awaiting_the_office_waiting() -> None:
    assert lifecycle.after_verification(S.AWAITING_OFFICE, S.HELD) is S.AWAITING_OFFICE
    assert lifecycle.after_verification(S.AWAITING_OFFICE, S.VERIFIED) is S.VERIFIED
    assert lifecycle.after_verification(S.RECEIVED, S.HELD) is S.HELD
    assert lifecycle.after_verification(S.HELD, S.VERIFIED) is S.VERIFIED


def test_one_order_moves_with_its_version_and_event(engine: Engine) -> None:
    (order_id,) = _add(engine, S.RELEASED)
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        lifecycle.transition(session, order, S.DELIVERED, E.DELIVERED, detail={"control_id": "C1"})
        assert (order.status, order.row_version) == (S.DELIVERED, 2)  # the object follows
    (stored,) = _orders(engine, [order_id])
    assert (stored.status, stored.row_version) == (S.DELIVERED, 2)
    (event,) = _events(engine, [order_id])
    assert (event.action, event.actor, event.detail) == (
        "delivered",
        "system",
        {"control_id": "C1"},
    )


def test_an_illegal_move_is_refused_with_nothing_written(engine: Engine) -> None:
    (order_id,) = _add(engine, S.RECEIVED)
    with session_scope(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        with pytest.raises(IllegalTransitionError, match="cannot go from received to released"):
            lifecycle.transition(session, order, S.RELEASED, E.RELEASED)
        with pytest.raises(WorkflowError):  # what the web layer answers 409 for
            lifecycle.transition_many(session, [order_id], S.DELIVERED, E.RELEASED)
    (stored,) = _orders(engine, [order_id])
    assert (stored.status, stored.row_version) == (S.RECEIVED, 1)
    assert _events(engine, [order_id]) == []


def test_a_stale_object_gets_a_concurrent_change_error(engine: Engine) -> None:
    (order_id,) = _add(engine, S.HELD)
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        with session_scope(engine) as other:
            moved = lifecycle.transition_many(other, [order_id], S.CANCELLED, E.CANCELLED)
            assert moved == [order_id]
        with pytest.raises(ConcurrentChangeError):
            lifecycle.transition(session, order, S.REJECTED, E.REJECTED)
    assert [e.action for e in _events(engine, [order_id])] == ["cancelled"]


def test_a_set_moves_only_the_orders_in_an_allowed_status(engine: Engine) -> None:
    ids = _add(engine, S.VERIFIED, S.HELD, S.RECEIVED, S.DELIVERED, S.AWAITING_OFFICE)
    with session_scope(engine) as session:
        moved = lifecycle.transition_many(
            session,
            ids,
            S.RELEASED,
            E.RELEASED,
            actor="coder1",
            detail=lambda moved: {i: {"n": n} for n, i in enumerate(moved)},
        )
    assert moved == [ids[0], ids[1], ids[4]]
    orders = _orders(engine, ids)
    assert [o.status for o in orders] == [
        "released",
        "released",
        "received",
        "delivered",
        "released",
    ]
    assert [o.row_version for o in orders] == [2, 2, 1, 1, 2]
    events = _events(engine, ids)
    assert [(e.order_id, e.actor, e.detail) for e in events] == [
        (ids[0], "coder1", {"n": 0}),
        (ids[1], "coder1", {"n": 1}),
        (ids[4], "coder1", {"n": 2}),
    ]


def test_a_set_with_versions_and_a_target_per_order(engine: Engine) -> None:
    ids = _add(engine, S.RECEIVED, S.RECEIVED, S.RECEIVED)
    with session_scope(engine) as session:
        moved = lifecycle.transition_many(
            session,
            ids,
            {ids[0]: S.VERIFIED, ids[1]: S.HELD, ids[2]: S.HELD},
            E.VERIFIED,
            sources=[S.RECEIVED],
            versions={ids[0]: 1, ids[1]: 1, ids[2]: 7},  # the third was read at another version
            detail={"same": True},
        )
    assert moved == ids[:2]
    assert [o.status for o in _orders(engine, ids)] == ["verified", "held", "received"]
    assert [e.detail for e in _events(engine, ids)] == [{"same": True}] * 2


def test_a_set_refuses_a_source_the_table_does_not_allow(engine: Engine) -> None:
    ids = _add(engine, S.DELIVERED)
    with session_scope(engine) as session, pytest.raises(IllegalTransitionError):
        lifecycle.transition_many(session, ids, S.VERIFIED, E.RE_VERIFIED, sources=[S.DELIVERED])
    assert [o.status for o in _orders(engine, ids)] == ["delivered"]


def test_a_claimed_version_is_one_step_with_the_status_change(engine: Engine) -> None:
    (order_id,) = _add(engine, S.HELD)
    with session_scope(engine) as session:
        assert lifecycle.claim_version(session, order_id, 1)
        assert not lifecycle.claim_version(session, order_id, 1)  # stale now
        order = session.get(Order, order_id, populate_existing=True)
        assert order is not None
        lifecycle.transition(session, order, S.REJECTED, E.REJECTED, version_claimed=True)
    (stored,) = _orders(engine, [order_id])
    assert (stored.status, stored.row_version) == (S.REJECTED, 2)
