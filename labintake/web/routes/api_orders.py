"""The JSON API on orders: the same actions, rules and audit as the screen (bearer tokens)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from labintake import audit
from labintake.errors import NotFoundError
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order
from labintake.models.queue import OrderNote
from labintake.queue.contacts import ContactChannel, ContactInput, ContactOutcome
from labintake.queue.detail import (
    ROWS_PER_PAGE,
    load_order_detail,
    order_detail_json,
    order_summary_json,
)
from labintake.queue.idempotency import bind_idempotency_key
from labintake.queue.lookup import find_orders
from labintake.queue.notes import add_note, notes_for
from labintake.web.deps import (
    MAX_DB_INT,
    CoderActor,
    CoderUser,
    CurrentPrincipal,
    QueueDep,
    RowId,
    SessionDep,
)
from labintake.web.schemas.orders import Note, OrderDetail, OrderDetailWithNotes, OrderList

router = APIRouter(prefix="/api/orders", tags=["orders"])

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", max_length=64)]


class Versioned(BaseModel):
    row_version: int = Field(ge=1, le=MAX_DB_INT, description="the row_version you last saw")


class AssignBody(Versioned):
    assignee: str | None = Field(default=None, max_length=100)
    take_over: bool = Field(
        default=False, description="claim an order another coder holds (recorded as taken over)"
    )


class ContactBody(Versioned):
    channel: ContactChannel
    outcome: ContactOutcome
    answer: str = Field(default="", max_length=4000)
    person: str = Field(default="", max_length=200)
    follow_up_on: date | None = None
    query_id: int | None = Field(default=None, ge=1, le=MAX_DB_INT)


class CorrectionBody(Versioned):
    kind: Literal["diagnosis", "test", "remove_diagnosis", "provider_npi"] = "diagnosis"
    contact_id: int = Field(
        ge=1, le=MAX_DB_INT, description="the recorded office answer this correction cites"
    )
    new_code: str = Field(default="", max_length=40)
    replaces: str = Field(default="", max_length=40, description="diagnosis replaced or removed")
    npi: str = Field(default="", max_length=20)
    test_seq: int | None = Field(default=None, ge=1, le=MAX_DB_INT)
    system: str = Field(default="", max_length=40)


class ReleaseBody(Versioned):
    override_reason: str = Field(default="", max_length=4000)
    modifier: str = Field(default="", max_length=4)


class NoteBody(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


def note_json(note: OrderNote) -> dict[str, Any]:
    return {"id": note.id, "at": note.at.isoformat(), "author": note.author, "text": note.text}


class RejectBody(Versioned):
    category: str = Field(default="", max_length=200, description="one of REJECT_REASONS")
    reason: str = Field(default="", max_length=4000, description="details, or the whole reason")


def _act(
    session: SessionDep,
    actor: CoderActor,
    idempotency_key: str,
    action: str,
    order_id: int,
    body: Versioned,
    run: Callable[..., object],
) -> dict[str, Any]:
    """Bind the Idempotency-Key to `action` and `body`, run the queue action (`run`: a queue
    method given all but the actor, order, row version and key), and answer with the order
    as it is now."""
    bind_idempotency_key(
        session, actor.username, idempotency_key, action, order_id, body.model_dump(mode="json")
    )
    run(actor, order_id, body.row_version, action_key=idempotency_key)
    session.expire_all()
    return order_detail_json(load_order_detail(session, order_id))


@router.get("", response_model=OrderList)
def list_orders(
    user: CoderUser,
    session: SessionDep,
    status: str = Query("", max_length=20),
    control_id: str = Query("", max_length=199),
    placer_order: str = Query("", max_length=199),
    patient: str = Query("", max_length=200),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=40),
) -> dict[str, Any]:
    orders, next_cursor = find_orders(
        session,
        status=status,
        control_id=control_id,
        placer_order=placer_order,
        patient=patient,
        limit=limit,
        cursor=cursor,
    )
    audit.record_view_of_list(
        session,
        user.username,
        [o.id for o in orders if o.id is not None],
        via="api",
        filters={
            "status": status,
            "control_id": control_id,
            "placer_order": placer_order,
            "patient": patient,
        },
    )
    return {"orders": [order_summary_json(o) for o in orders], "next_cursor": next_cursor}


@router.get("/{order_id}", response_model=OrderDetailWithNotes)
def get_order(
    order_id: RowId,
    user: CoderUser,
    session: SessionDep,
    tests_offset: int = Query(0, ge=0, le=MAX_DB_INT),
    tests_limit: int = Query(ROWS_PER_PAGE, ge=1, le=500),
) -> dict[str, Any]:
    """The order with a page of its tests (`tests_offset`, `tests_limit`; `tests_total` and
    `tests_next_offset` say what is left) and its first diagnoses (`diagnoses_total`)."""
    detail = load_order_detail(session, order_id, tests_offset=tests_offset, page=tests_limit)
    body = order_detail_json(detail)
    body["notes"] = [note_json(n) for n in notes_for(session, order_id)]
    audit.record_view(session, user.username, "view_order", order_id=order_id, via="api")
    return body


@router.post("/{order_id}/notes", status_code=201, response_model=Note)
def post_note(
    order_id: RowId,
    body: NoteBody,
    principal: CurrentPrincipal,
    user: CoderUser,
    session: SessionDep,
) -> dict[str, Any]:
    """An internal note on the order (never sent to the office or the LIS)."""
    return note_json(add_note(session, order_id, user.username, body.text, principal.via))


@router.get(
    "/{order_id}/message",
    response_class=Response,
    responses={200: {"content": {"x-application/hl7-v2+er7": {}}}},
)
def get_message(order_id: RowId, user: CoderUser, session: SessionDep) -> Response:
    """The raw HL7 message as received (bytes unchanged)."""
    order = session.get(Order, order_id)
    message = session.get(InboundMessage, order.message_id) if order is not None else None
    if message is None:
        raise NotFoundError(f"no order {order_id}")
    if message.raw is None:
        raise NotFoundError(f"the raw message of order {order_id} was purged (retention)")
    audit.record_view(
        session,
        user.username,
        "view_message",
        order_id=order_id,
        message_id=message.id,
        via="api",
    )
    return Response(
        message.raw,
        media_type="x-application/hl7-v2+er7",
        headers={"X-HL7-Charset": message.charset or ""},
    )


@router.post("/{order_id}/assign", response_model=OrderDetail)
def assign(
    order_id: RowId,
    body: AssignBody,
    actor: CoderActor,
    queue: QueueDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = "",
) -> dict[str, Any]:
    action = partial(queue.assign, assignee=body.assignee, take_over=body.take_over)
    return _act(session, actor, idempotency_key, "assign", order_id, body, action)


@router.post("/{order_id}/contacts", response_model=OrderDetail)
def record_contact(
    order_id: RowId,
    body: ContactBody,
    actor: CoderActor,
    queue: QueueDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = "",
) -> dict[str, Any]:
    contact = ContactInput(
        body.channel, body.outcome, body.answer, body.person, body.follow_up_on, body.query_id
    )
    action = partial(queue.record_contact, contact=contact)
    return _act(session, actor, idempotency_key, "contacts", order_id, body, action)


@router.post("/{order_id}/corrections", response_model=OrderDetail)
def correct(
    order_id: RowId,
    body: CorrectionBody,
    actor: CoderActor,
    queue: QueueDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = "",
) -> dict[str, Any]:
    by_kind = {
        "diagnosis": partial(
            queue.correct_diagnosis, new_code=body.new_code, replaces=body.replaces
        ),
        "test": partial(
            queue.correct_test,
            test_seq=body.test_seq or 0,
            new_code=body.new_code,
            system=body.system,
        ),
        "remove_diagnosis": partial(queue.remove_diagnosis, code=body.replaces),
        "provider_npi": partial(queue.correct_provider_npi, npi=body.npi),
    }
    action = partial(by_kind[body.kind], contact_id=body.contact_id)
    return _act(session, actor, idempotency_key, "corrections", order_id, body, action)


@router.post("/{order_id}/release", response_model=OrderDetail)
def release(
    order_id: RowId,
    body: ReleaseBody,
    actor: CoderActor,
    queue: QueueDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = "",
) -> dict[str, Any]:
    action = partial(queue.release, override_reason=body.override_reason, modifier=body.modifier)
    return _act(session, actor, idempotency_key, "release", order_id, body, action)


@router.post("/{order_id}/reject", response_model=OrderDetail)
def reject(
    order_id: RowId,
    body: RejectBody,
    actor: CoderActor,
    queue: QueueDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = "",
) -> dict[str, Any]:
    action = partial(queue.reject, reason=body.reason, category=body.category)
    return _act(session, actor, idempotency_key, "reject", order_id, body, action)
