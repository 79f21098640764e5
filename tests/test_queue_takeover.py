"""Taking over an order another coder holds: asked first, audited, and shown to the holder."""

from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.errors import ConcurrentChangeError, HeldByAnotherError, PermissionDeniedError
from labintake.models.orders import Order, OrderEvent
from labintake.models.users import AuditEntry
from labintake.queue.claims import holders, taken_from
from labintake.queue.service import Actor, ClarificationQueue
from tests.factories import held_order, make_user

ANN = Actor("ann", Role.CODER, "web")
BEN = Actor("ben", Role.CODER, "web")
MARIA = Actor("maria", Role.MANAGER, "web")


def _version(engine: Engine, order_id: int) -> int:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.row_version


def _claimed_by_ann(engine: Engine, settings: Settings) -> int:
    make_user(engine, "ann")
    make_user(engine, "ben")
    order_id = held_order(engine, settings)
    with Session(engine) as session:
        ClarificationQueue(session, settings).assign(
            ANN, order_id, _version(engine, order_id), "ann"
        )
    return order_id


def test_claiming_an_order_another_coder_holds_asks_first_and_changes_nothing(
    engine: Engine, settings: Settings
) -> None:
    order_id = _claimed_by_ann(engine, settings)
    version = _version(engine, order_id)
    pattern = r"held by Ann \(ann\) since \d{4}-\d\d-\d\d"
    with Session(engine) as session, pytest.raises(HeldByAnotherError, match=pattern) as err:
        ClarificationQueue(session, settings).assign(BEN, order_id, version, "ben")
    assert err.value.holder == "ann"
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        assert (order.assigned_to, order.row_version) == ("ann", version)
        assert order.assigned_at is not None
        held = holders(session, [order], "ben")[order_id]
        assert (held.username, held.name) == ("ann", "Ann")
        since = order.assigned_at.astimezone(UTC)
        assert held.question(UTC) == f"Held by Ann since {since:%H:%M} — take over?"
        assert holders(session, [order], "ann") == {}
        refused = session.exec(
            select(AuditEntry).where(AuditEntry.action == "action_refused")
        ).one()
        assert refused.actor == "ben"
        assert refused.after["reason"] == "claimed by another coder; take-over not confirmed"


def test_a_take_over_is_recorded_audited_and_told_to_the_previous_holder(
    engine: Engine, settings: Settings
) -> None:
    order_id = _claimed_by_ann(engine, settings)
    stale = _version(engine, order_id)
    with Session(engine) as session:
        result = ClarificationQueue(session, settings).assign(
            BEN, order_id, stale, "ben", "k1", take_over=True
        )
        assert result.note == "taken_over"
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        assert order.assigned_to == "ben"
        events = list(
            session.exec(
                select(OrderEvent)
                .where(OrderEvent.order_id == order_id)
                .order_by(col(OrderEvent.id))
            )
        )
        assert events[-1].action == "taken_over"
        assert events[-1].detail["before"]["assigned_to"] == "ann"
        assert events[-1].detail["after"] == {"assigned_to": "ben"}
        audited = session.exec(
            select(AuditEntry).where(
                AuditEntry.order_id == order_id, AuditEntry.action == "taken_over"
            )
        ).one()
        assert (audited.actor, audited.before["assigned_to"]) == ("ben", "ann")
        taken = taken_from(session, order, events, "ann")
        assert taken is not None
        assert (taken.by, taken.by_name) == ("ben", "Ben")
        assert taken_from(session, order, events, "ben") is None
    # Ann's page was opened before: her next action is refused as a change made meanwhile;
    # on the fresh version she is told the order is Ben's.
    with Session(engine) as session, pytest.raises(ConcurrentChangeError, match="by ben"):
        ClarificationQueue(session, settings).reject(ANN, order_id, stale, reason="dup")
    fresh = _version(engine, order_id)
    with Session(engine) as session, pytest.raises(PermissionDeniedError, match="only ben"):
        ClarificationQueue(session, settings).reject(ANN, order_id, fresh, reason="dup")


def test_a_manager_claiming_a_held_order_is_asked_too_but_assigning_is_a_hand_over(
    engine: Engine, settings: Settings
) -> None:
    order_id = _claimed_by_ann(engine, settings)
    make_user(engine, "maria", Role.MANAGER)
    with Session(engine) as session, pytest.raises(HeldByAnotherError):
        ClarificationQueue(session, settings).assign(
            MARIA, order_id, _version(engine, order_id), "maria"
        )
    with Session(engine) as session:
        result = ClarificationQueue(session, settings).assign(
            MARIA, order_id, _version(engine, order_id), "ben"
        )
        assert result.note == ""
        assert result.order.assigned_to == "ben"
