"""An office query's life, on both databases: written once for the same findings, answered by
the contact that records the office's answer, and closed when the order is released (by a
coder or the release worker), rejected or cancelled by the placer."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.auth.accounts import set_phone
from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.errors import WorkflowError
from labintake.interfaces import load_interfaces
from labintake.models.orders import Finding, Order, OrderEvent
from labintake.models.queue import OfficeContact, OfficeQuery
from labintake.models.users import User
from labintake.queue.contacts import ContactChannel, ContactInput, ContactOutcome, add_working_days
from labintake.queue.query_letterhead import letterhead_for
from labintake.queue.service import QUERY_EXISTS, Actor, ClarificationQueue
from labintake.reading.worker import read_until_empty
from labintake.release.bulk import release_verified
from labintake.stats import snapshot
from labintake.statuses import OrderStatus
from tests.factories import OrderSpec, held_order, make_user, store_message

ANN = Actor("ann", Role.CODER, "web")


def _version(engine: Engine, order_id: int) -> int:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.row_version


def _write(engine: Engine, settings: Settings, order_id: int) -> tuple[str, OfficeQuery]:
    with Session(engine) as session:
        result, query = ClarificationQueue(session, settings).create_query(
            ANN, order_id, _version(engine, order_id)
        )
        assert query is not None
        session.refresh(query)
        session.expunge(query)
        return result.note, query


def _query(engine: Engine, query_id: int | None) -> OfficeQuery:
    with Session(engine) as session:
        query = session.get(OfficeQuery, query_id)
        assert query is not None
        return query


def _events(engine: Engine, order_id: int, action: str) -> list[OrderEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(OrderEvent).where(
                    OrderEvent.order_id == order_id, OrderEvent.action == action
                )
            )
        )


def test_writing_the_query_again_returns_the_open_one_and_changes_nothing(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    note, first = _write(engine, settings, order_id)
    assert note == ""
    assert first.finding_keys  # the header code E11's finding
    assert first.questions[0]["finding"] == "DX_NOT_BILLABLE"
    assert first.tests == ["HEMOGLOBIN A1C (as sent: 83036)"]
    assert first.respond_by == add_working_days(
        first.created_at.date(), settings.query_respond_within_days
    )
    version = _version(engine, order_id)
    note, again = _write(engine, settings, order_id)
    assert (note, again.id) == (QUERY_EXISTS, first.id)
    assert _version(engine, order_id) == version  # nothing written
    assert len(_events(engine, order_id, "query_created")) == 1


def test_other_findings_get_a_query_of_their_own(engine: Engine, settings: Settings) -> None:
    order_id = held_order(engine, settings)
    _, first = _write(engine, settings, order_id)
    with Session(engine) as session:  # the rules raise one more finding on the order
        finding = session.exec(select(Finding).where(Finding.order_id == order_id)).first()
        assert finding is not None
        session.add(
            Finding(
                order_id=order_id,
                verification_id=finding.verification_id,
                code="PROVIDER_NPI_INVALID",
                severity="hold",
                location="ORC-12",
                message="NPI check digit",
                reference={"subject": "1987654321"},
            )
        )
        session.commit()
    note, second = _write(engine, settings, order_id)
    assert note == ""
    assert second.id != first.id
    assert [q["finding"] for q in second.questions] == ["DX_NOT_BILLABLE", "PROVIDER_NPI_INVALID"]


def test_the_offices_answer_counts_against_the_query_it_answers(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    other_order = held_order(engine, settings, _spec("PF9002", "PFM900002"))
    _, query = _write(engine, settings, order_id)
    answer = ContactInput(
        ContactChannel.FAX, ContactOutcome.ANSWERED, answer="E11.9 per chart", query_id=query.id
    )
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        with pytest.raises(WorkflowError, match="does not belong to this order"):
            queue.record_contact(ANN, other_order, _version(engine, other_order), answer)
        _, contact = queue.record_contact(ANN, order_id, _version(engine, order_id), answer)
        assert contact is not None
        assert contact.query_id == query.id
    answered = _query(engine, query.id)
    assert (answered.status, answered.closed_reason) == ("answered", "answered")
    assert answered.closed_at is not None
    with Session(engine) as session:
        linked = session.exec(select(OfficeContact).where(OfficeContact.query_id == query.id)).all()
    assert [c.answer for c in linked] == ["E11.9 per chart"]
    # an answered query is not open: writing the query again makes a new one
    note, again = _write(engine, settings, order_id)
    assert note == ""
    assert again.id != query.id


def _spec(placer: str, control_id: str) -> OrderSpec:
    return OrderSpec(placer=placer, control_id=control_id, mrn=f"M{placer}")


def test_rejecting_the_order_closes_its_open_queries_not_the_answered_one(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    _, answered = _write(engine, settings, order_id)
    with Session(engine) as session:
        ClarificationQueue(session, settings).record_contact(
            ANN,
            order_id,
            _version(engine, order_id),
            ContactInput(
                ContactChannel.PHONE, ContactOutcome.ANSWERED, answer="no", query_id=answered.id
            ),
        )
    _, open_one = _write(engine, settings, order_id)
    with Session(engine) as session:
        ClarificationQueue(session, settings).reject(
            ANN, order_id, _version(engine, order_id), reason="Patient not registered here"
        )
    assert _query(engine, answered.id).closed_reason == "answered"
    closed = _query(engine, open_one.id)
    assert (closed.status, closed.closed_reason) == ("closed", "rejected")
    [event] = _events(engine, order_id, "queries_closed")
    assert event.actor == "ann"
    assert event.detail == {"query_ids": [open_one.id], "reason": "rejected"}


def test_a_coders_release_closes_the_open_query(engine: Engine, settings: Settings) -> None:
    order_id = held_order(engine, settings)
    _, query = _write(engine, settings, order_id)
    with Session(engine) as session:
        ClarificationQueue(session, settings).release(
            ANN, order_id, _version(engine, order_id), override_reason="ABN signed on file"
        )
    closed = _query(engine, query.id)
    assert (closed.status, closed.closed_reason) == ("closed", "released")


def test_the_release_workers_bulk_release_closes_the_open_query(
    engine: Engine, settings: Settings
) -> None:
    order_id = held_order(engine, settings)
    untouched = held_order(engine, settings, _spec("PF9003", "PFM900003"))
    _, query = _write(engine, settings, order_id)
    _, other = _write(engine, settings, untouched)
    with Session(engine) as session:  # a correction cleared the holds: verified, not released
        session.execute(
            update(Order).where(col(Order.id) == order_id).values(status=OrderStatus.VERIFIED.value)
        )
        session.commit()
    assert release_verified(engine) == 1
    closed = _query(engine, query.id)
    assert (closed.status, closed.closed_reason) == ("closed", "released")
    assert _query(engine, other.id).status == "open"  # another order's query is left alone
    [event] = _events(engine, order_id, "queries_closed")
    assert event.actor == "system"


def test_the_placers_cancel_closes_the_open_query(engine: Engine, settings: Settings) -> None:
    order_id = held_order(engine, settings)
    _, query = _write(engine, settings, order_id)
    cancel = (
        b"MSH|^~\\&|PRAXIS|PRAIRIEFM|LABINTAKE|REFLAB|20260315093000||ORM^O01|PFC1|P|2.3.1"
        b"||||||UNICODE UTF-8\r"
        b"PID|1||PF20001^^^PRAIRIEFM^MR||Lindqvist^Marta||19580211|F\r"
        b"ORC|CA|PF9001\r"
    )
    store_message(engine, cancel, "PFC1")
    read_until_empty(engine, load_interfaces(settings.interfaces_dir))
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        assert order.status == OrderStatus.CANCELLED.value
    closed = _query(engine, query.id)
    assert (closed.status, closed.closed_reason) == ("closed", "cancelled")
    [event] = _events(engine, order_id, "queries_closed")
    assert event.actor == "placer"


def test_the_letterhead_prints_the_coders_direct_line_or_else_the_labs(
    engine: Engine, settings: Settings
) -> None:
    make_user(engine, "ann", Role.CODER)
    settings.lab_phone = "(515) 555-0100"
    query = OfficeQuery(order_id=1, actor="ann", question="q", respond_by=date(2026, 12, 9))
    with Session(engine) as session:
        assert letterhead_for(session, settings, query).coder_phone == "(515) 555-0100"
        user = session.exec(select(User).where(User.username == "ann")).one()
        with pytest.raises(WorkflowError, match="direct line"):
            set_phone(session, user, "call me\x07", actor="admin")
        assert set_phone(session, user, " (515)  555-0142 ext 12 ", actor="admin")
        session.commit()
        head = letterhead_for(session, settings, query)
    assert (head.coder_name, head.coder_phone) == ("Ann", "(515) 555-0142 ext 12")
    assert head.from_line == "Ann, coding · direct line (515) 555-0142 ext 12"


def test_a_query_closed_by_the_orders_release_is_not_counted_as_an_office_turnaround(
    engine: Engine, settings: Settings
) -> None:
    answered_order = held_order(engine, settings)
    released_order = held_order(engine, settings, _spec("PF9004", "PFM900004"))
    _, answered = _write(engine, settings, answered_order)
    _write(engine, settings, released_order)
    with Session(engine) as session:
        queue = ClarificationQueue(session, settings)
        queue.record_contact(
            ANN,
            answered_order,
            _version(engine, answered_order),
            ContactInput(
                ContactChannel.FAX, ContactOutcome.ANSWERED, answer="ok", query_id=answered.id
            ),
        )
        queue.release(
            ANN, released_order, _version(engine, released_order), override_reason="ABN on file"
        )
        assert snapshot(session).turnaround_query.count == 1
