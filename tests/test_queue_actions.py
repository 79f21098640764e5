"""The coder's actions: contacts, corrections citing an answer, release, reject, concurrency."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.errors import ConcurrentChangeError, PermissionDeniedError, WorkflowError
from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderEvent, OrderTest
from labintake.models.release import OutboxEntry
from labintake.models.users import AuditEntry
from labintake.queue.contacts import (
    MAX_UNANSWERED_ATTEMPTS,
    ContactChannel,
    ContactInput,
    ContactOutcome,
)
from labintake.queue.service import Actor, ClarificationQueue
from labintake.statuses import OrderStatus
from tests.factories import held_order

ANN = Actor("ann", Role.CODER, "web")
BEN = Actor("ben", Role.CODER, "web")
ANSWER = ContactInput(
    ContactChannel.PHONE,
    ContactOutcome.ANSWERED,
    answer="Dr Whitfield says: type 2 diabetes without complications.",
    person="Pat at the front desk",
)


def _order(engine: Engine, order_id: int) -> Order:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order


def _answered(engine: Engine, settings: Settings, order_id: int) -> int:
    with Session(engine) as session:
        version = _order(engine, order_id).row_version
        _, contact = ClarificationQueue(session, settings).record_contact(
            ANN, order_id, version, ANSWER
        )
        assert contact is not None
        assert contact.id is not None
        return contact.id


def test_an_unanswered_call_waits_for_the_office_until_the_follow_up_date(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    follow_up = date.today() + timedelta(days=2)
    with Session(engine) as session:
        version = _order(engine, order_id).row_version
        ClarificationQueue(session, settings).record_contact(
            ANN,
            order_id,
            version,
            ContactInput(ContactChannel.PHONE, ContactOutcome.LEFT_MESSAGE, follow_up_on=follow_up),
        )
    order = _order(engine, order_id)
    assert order.status == OrderStatus.AWAITING_OFFICE.value
    assert order.due_at.date() == follow_up
    assert order.assigned_to == "ann"  # acting on an unassigned order claims it
    assert order.row_version == version + 1


def test_unanswered_attempts_stop_at_the_cap_and_the_order_comes_due_at_once(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    attempt = ContactInput(ContactChannel.FAX, ContactOutcome.NO_ANSWER)
    for _ in range(MAX_UNANSWERED_ATTEMPTS):
        with Session(engine) as session:
            version = _order(engine, order_id).row_version
            ClarificationQueue(session, settings).record_contact(ANN, order_id, version, attempt)
    order = _order(engine, order_id)
    assert order.status == OrderStatus.HELD.value
    with Session(engine) as session:
        actions = [
            e.action
            for e in session.exec(select(OrderEvent).where(OrderEvent.order_id == order_id))
        ]
        assert "contact_cap_reached" in actions
        with pytest.raises(WorkflowError, match="unanswered attempts already"):
            ClarificationQueue(session, settings).record_contact(
                ANN, order_id, order.row_version, attempt
            )
        # The office calling back is still recorded.
        ClarificationQueue(session, settings).record_contact(
            ANN, order_id, order.row_version, ANSWER
        )


def test_an_answered_contact_needs_the_office_words(engine: Engine, settings: Settings) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session, pytest.raises(WorkflowError, match="in its words"):
        ClarificationQueue(session, settings).record_contact(
            ANN, order_id, 1, ContactInput(ContactChannel.PHONE, ContactOutcome.ANSWERED)
        )


def test_a_correction_must_cite_an_answered_contact(engine: Engine, settings: Settings) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session:
        version = _order(engine, order_id).row_version
        _, unanswered = ClarificationQueue(session, settings).record_contact(
            ANN, order_id, version, ContactInput(ContactChannel.PHONE, ContactOutcome.NO_ANSWER)
        )
        assert unanswered is not None
        assert unanswered.id is not None
        with pytest.raises(WorkflowError, match="must cite a contact where the office answered"):
            ClarificationQueue(session, settings).correct_diagnosis(
                ANN, order_id, version + 1, contact_id=unanswered.id, new_code="E11.9"
            )


def test_correcting_the_diagnosis_from_the_answer_reverifies_and_clears_the_hold(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    contact_id = _answered(engine, settings, order_id)
    with Session(engine) as session:
        version = _order(engine, order_id).row_version
        result = ClarificationQueue(session, settings).correct_diagnosis(
            ANN, order_id, version, contact_id=contact_id, new_code="e11.9", replaces="E11"
        )
    assert result.order.status == OrderStatus.VERIFIED.value
    with Session(engine) as session:
        dx = list(session.exec(select(OrderDiagnosis).where(OrderDiagnosis.order_id == order_id)))
        assert [(d.code, d.active, d.source) for d in dx] == [
            ("E11", False, "sender"),
            ("E11.9", True, "correction"),
        ]
        finding = session.exec(select(Finding).where(Finding.code == "DX_NOT_BILLABLE")).one()
        assert finding.state == "resolved"
        event = session.exec(
            select(OrderEvent).where(OrderEvent.action == "diagnosis_corrected")
        ).one()
        assert event.detail["contact_id"] == contact_id
        assert event.detail["before"] == {"diagnoses": ["E11"]}
        assert event.detail["after"] == {"diagnoses": ["E11.9"]}
        audit = session.exec(
            select(AuditEntry).where(AuditEntry.action == "diagnosis_corrected")
        ).one()
        assert audit.actor == "ann"


def test_release_is_refused_while_a_hold_is_open_unless_overridden_with_a_reason(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    version = _order(engine, order_id).row_version
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        with pytest.raises(WorkflowError, match="open hold findings \\(DX_NOT_BILLABLE\\)"):
            queue.release(ANN, order_id, version)
        with pytest.raises(WorkflowError, match="say why GA applies"):
            queue.release(ANN, order_id, version, modifier="GA")
        queue.release(ANN, order_id, version, override_reason="ABN signed, on file", modifier="GA")
    order = _order(engine, order_id)
    assert order.status == OrderStatus.RELEASED.value
    with Session(engine) as session:
        finding = session.exec(select(Finding).where(Finding.order_id == order_id)).one()
        assert finding.state == "overridden"
        assert finding.override_reason == "ABN signed, on file"
        test = session.exec(select(OrderTest).where(OrderTest.order_id == order_id)).one()
        assert "GA" in test.modifiers.split(",")
        assert session.exec(select(OutboxEntry).where(OutboxEntry.order_id == order_id)).one()


def test_reject_needs_a_reason_and_takes_the_order_out_of_the_queue(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    version = _order(engine, order_id).row_version
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        with pytest.raises(WorkflowError, match="needs a reason"):
            queue.reject(ANN, order_id, version, reason="  ")
        queue.reject(ANN, order_id, version, reason="Office did not answer after 4 attempts")
    assert _order(engine, order_id).status == OrderStatus.REJECTED.value
    with Session(engine) as session, pytest.raises(WorkflowError, match="is rejected"):
        ClarificationQueue(session, settings).reject(ANN, order_id, version + 1, reason="again")


def test_of_two_coders_acting_on_the_same_version_exactly_one_succeeds(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    version = _order(engine, order_id).row_version
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def act(actor: Actor) -> None:
        with Session(engine) as session:
            barrier.wait()
            try:
                ClarificationQueue(session, settings).reject(
                    actor, order_id, version, reason=f"rejected by {actor.username}"
                )
                outcomes.append("ok")
            except ConcurrentChangeError as exc:
                outcomes.append(f"stale, now at {exc.current_row_version}")

    threads = [threading.Thread(target=act, args=(a,)) for a in (ANN, BEN)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", f"stale, now at {version + 1}"]
    with Session(engine) as session:
        events = session.exec(select(OrderEvent).where(OrderEvent.action == "rejected")).all()
        assert len(events) == 1


def test_the_same_submit_twice_is_answered_once_without_a_conflict(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    version = _order(engine, order_id).row_version
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        queue.assign(ANN, order_id, version, "ann", action_key="k1")
        replay = queue.assign(ANN, order_id, version, "ann", action_key="k1")
        assert replay.replayed
        with pytest.raises(ConcurrentChangeError):
            queue.assign(BEN, order_id, version, "ben", action_key="k1")  # not ben's submit
        claims = session.exec(
            select(OrderEvent).where(
                OrderEvent.order_id == order_id, col(OrderEvent.action) == "claimed"
            )
        ).all()
        assert len(claims) == 1


def test_coders_claim_for_themselves_and_only_managers_assign_others(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    version = _order(engine, order_id).row_version
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        with pytest.raises(PermissionDeniedError):
            queue.assign(ANN, order_id, version, "ben")
        with pytest.raises(WorkflowError, match="no active user"):
            queue.assign(Actor("meg", Role.MANAGER), order_id, version, "nobody")


def test_a_rejection_keeps_its_reason_for_the_reply_to_the_placer(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    version = _order(engine, order_id).row_version
    with Session(engine) as session:
        ClarificationQueue(session, settings).reject(
            ANN, order_id, version, reason="Patient not registered at this lab"
        )
    assert _order(engine, order_id).details["reject_reason"] == "Patient not registered at this lab"


def test_a_query_is_answered_by_a_contact_or_closed_or_cancelled(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        _, first = queue.create_query(ANN, order_id, _order(engine, order_id).row_version)
        assert first is not None
        assert first.id is not None
        answered = ContactInput(
            ContactChannel.FAX, ContactOutcome.ANSWERED, answer="E11.9 per chart", query_id=first.id
        )
        queue.record_contact(ANN, order_id, _order(engine, order_id).row_version, answered)
        # the first is answered: asking again writes a second query
        _, second = queue.create_query(ANN, order_id, _order(engine, order_id).row_version)
        assert second is not None
        assert second.id is not None
        assert second.id != first.id
        queue.close_query(
            ANN, order_id, _order(engine, order_id).row_version, second.id, "cancelled"
        )
        session.expire_all()
        assert (first.status, second.status) == ("answered", "cancelled")
        assert (first.closed_reason, second.closed_reason) == ("answered", "sent_in_error")
        with pytest.raises(WorkflowError, match="closed or cancelled"):
            queue.close_query(ANN, order_id, _order(engine, order_id).row_version, second.id, "x")
        version = _order(engine, order_id).row_version
        with pytest.raises(WorkflowError, match="is answered already"):
            queue.close_query(ANN, order_id, version, first.id, "closed")
        assert _order(engine, order_id).row_version == version  # nothing changed


def test_a_coder_cannot_put_back_an_order_someone_else_holds(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        queue.assign(ANN, order_id, _order(engine, order_id).row_version, "ann")
        version = _order(engine, order_id).row_version
        with pytest.raises(PermissionDeniedError, match="ann's"):
            queue.assign(BEN, order_id, version, None)
        assert _order(engine, order_id).row_version == version  # nothing changed
        queue.assign(ANN, order_id, version, None)
    assert _order(engine, order_id).assigned_to is None
