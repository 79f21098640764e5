"""The order page and the coder's actions on it (HTMX forms with CSRF and row versions)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from labintake import audit
from labintake.auth.accounts import active_usernames
from labintake.auth.roles import Role
from labintake.db import utcnow
from labintake.models.messages import InboundMessage
from labintake.models.users import User
from labintake.queue.claims import holders, taken_from
from labintake.queue.contacts import (
    MAX_UNANSWERED_ATTEMPTS,
    OUTCOME_LABELS,
    ContactChannel,
    ContactInput,
    ContactOutcome,
    next_working_day,
)
from labintake.queue.detail import load_order_detail
from labintake.queue.guard import ActionResult
from labintake.queue.listing import next_in_queue
from labintake.queue.lookup import load_order
from labintake.queue.notes import add_note, notes_for
from labintake.queue.outcomes import HOLDS_CLEARED, RELEASE_NOTES, release_note
from labintake.queue.raw_message import show_message
from labintake.queue.service import ABN_MODIFIERS, ALREADY_RELEASED, QUERY_EXISTS
from labintake.statuses import RELEASED_STATUSES, OrderStatus
from labintake.web.deps import (
    MAX_DB_INT,
    CoderActor,
    CoderUser,
    QueueDep,
    RowId,
    SessionDep,
    SettingsDep,
)
from labintake.web.order_view import failing_diagnoses, history_lines, next_step
from labintake.web.rendering import render
from labintake.web.responses import go_to
from labintake.web.routes.queue import coder_zone, working_list

router = APIRouter()

RowVersion = Annotated[int, Form(ge=1, le=MAX_DB_INT)]
FormId = Annotated[int, Form(ge=1, le=MAX_DB_INT)]
ActionKey = Annotated[str, Form(max_length=64)]
Text = Annotated[str, Form(max_length=4000)]
# HTMX stops polling on this status (the note is final: released, or no longer waiting).
STOP_POLLING = 286

DONE_MESSAGES = {
    "claimed": "You have claimed this order.",
    "assigned": "Assignment saved.",
    "contact": "Contact recorded.",
    "parked": "Contact recorded; that order waits for the office until its follow-up date. "
    "This is the next order in your queue.",
    "query": "Query written: print it or download the PDF below.",
    "query_exists": "An open query already asks about these findings: it is listed below "
    "with its PDF. Nothing new was written.",
    "query_closed": "Query status saved.",
    "corrected": "Correction saved and the order re-verified.",
    "removed": "Diagnosis removed and the order re-verified.",
    "noted": "Note added.",
    "released": "Order released to the lab. This is the next order in your queue.",
    "rejected": "Order rejected. This is the next order in your queue.",
}


@router.get("/orders/{order_id}")
def order_page(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    tests_offset: int = Query(0, ge=0, le=MAX_DB_INT),
) -> Response:
    detail = load_order_detail(session, order_id, tests_offset=tests_offset)
    message = session.get(InboundMessage, detail.order.message_id)
    shown = (
        show_message(message.raw, message.charset)
        if message is not None and message.raw is not None
        else None
    )
    audit.record_view(session, user.username, "view_order", order_id=order_id, via="web")
    is_manager = Role(user.role).allows(Role.MANAGER)
    done = request.query_params.get("done", "")
    stale = request.query_params.get("stale") == "1"
    order = detail.order
    release_of = request.query_params.get("order", "") if done in RELEASE_NOTES else ""
    if not release_of and order.status == OrderStatus.VERIFIED:
        release_of = str(order_id)  # this order waits for the release worker: say so
    released_meanwhile = release_note(session, release_of) if release_of else None
    last_event = detail.events[-1] if detail.events else None
    taken = taken_from(session, order, detail.events, user.username)
    if done == "claimed" and order.assigned_to != user.username:
        done = ""  # an old "You have claimed this order" link, reloaded after a take-over
    holder = holders(session, [order], user.username).get(order_id)
    return render(
        request,
        "order.html",
        {
            "d": detail,
            "shown": shown,
            "audit_entries": audit.entries_for_order(session, order_id) if is_manager else [],
            "assignees": active_usernames(session) if is_manager else [],
            "next_id": next_in_queue(
                session, order_id, user.username, working=working_list(request, user)
            ),
            "done_message": DONE_MESSAGES.get(done, ""),
            "stale": stale,
            "released_meanwhile": released_meanwhile,
            "last_event": last_event,
            "taken": taken,
            "history": history_lines(detail),
            "dx_titles": queue.official_titles(order, [dx.code for dx in detail.diagnoses]),
            "dx_failing": failing_diagnoses(detail),
            "next_step": "" if stale else next_step(detail),
            "holder": holder,
            "take_over_question": holder.question(coder_zone(request)) if holder else "",
            "channels": [str(c) for c in ContactChannel],
            "outcomes": OUTCOME_LABELS,
            "abn_modifiers": ABN_MODIFIERS,
            "reject_reasons": settings.reject_reasons,
            "notes": notes_for(session, order_id),
            "max_attempts": MAX_UNANSWERED_ATTEMPTS,
            "default_follow_up": next_working_day(utcnow().date()).isoformat(),
        },
    )


def _after(request: Request, session: SessionDep, order_id: int, done: str, user: User) -> Response:
    if done in ("released", "rejected", "parked", *RELEASE_NOTES):
        following = next_in_queue(
            session, order_id, user.username, working=working_list(request, user)
        )
        extra = f"&order={order_id}" if done in RELEASE_NOTES else ""
        if following is not None:
            return go_to(request, f"/orders/{following}?done={done}{extra}")
        return go_to(request, f"/queue?done={done}{extra}")
    return go_to(request, f"/orders/{order_id}?done={done}")


@router.post("/orders/{order_id}/assign")
def assign(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    row_version: RowVersion,
    action_key: ActionKey = "",
    assignee: Annotated[str, Form(max_length=100)] = "",
    take_over: Annotated[bool, Form()] = False,
) -> Response:
    """Claim (assignee = me), take over (confirmed on the page), hand over (managers) or put
    back (empty)."""
    target = user.username if assignee == "me" else (assignee.strip() or None)
    queue.assign(actor, order_id, row_version, target, action_key, take_over=take_over)
    done = "claimed" if target == user.username else "assigned"
    return _after(request, session, order_id, done, user)


@router.get("/orders/{order_id}/release-watch")
def release_watch(
    request: Request, order_id: RowId, user: CoderUser, session: SessionDep
) -> Response:
    """Polled by the note "All holds resolved: ... goes to the lab automatically" until the
    release worker has taken the order; then the note says when it was released."""
    note = release_note(session, str(order_id))
    final = note is None or not note.pending
    return render(
        request,
        "partials/release_note_text.html",
        {"r": note, "order_id": order_id},
        status_code=STOP_POLLING if final else 200,
    )


@router.get("/orders/{order_id}/claim-watch")
def claim_watch(
    request: Request, order_id: RowId, user: CoderUser, session: SessionDep
) -> Response:
    """Polled by the holder's open order page: tells them at once when the order is taken
    over (their next action would be refused as a change made meanwhile)."""
    detail = load_order_detail(session, order_id, page=1)
    taken = taken_from(session, detail.order, detail.events, user.username)
    return render(request, "partials/claim_watch.html", {"o": detail.order, "taken": taken})


@router.post("/orders/{order_id}/contacts")
def record_contact(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    row_version: RowVersion,
    channel: Annotated[ContactChannel, Form()],
    outcome: Annotated[ContactOutcome, Form()],
    action_key: ActionKey = "",
    answer: Text = "",
    person: Annotated[str, Form(max_length=200)] = "",
    follow_up_on: Annotated[date | None, Form()] = None,
    query_id: Annotated[int | None, Form(ge=1, le=MAX_DB_INT)] = None,
) -> Response:
    contact = ContactInput(channel, outcome, answer, person, follow_up_on, query_id)
    queue.record_contact(actor, order_id, row_version, contact, action_key)
    # An unanswered attempt parks the order until its follow-up date: on to the next one.
    done = "contact" if outcome is ContactOutcome.ANSWERED else "parked"
    return _after(request, session, order_id, done, user)


@router.post("/orders/{order_id}/queries")
def create_query(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    row_version: RowVersion,
    action_key: ActionKey = "",
) -> Response:
    result, _ = queue.create_query(actor, order_id, row_version, action_key)
    done = "query_exists" if result.note == QUERY_EXISTS else "query"
    return _after(request, session, order_id, done, user)


@router.post("/orders/{order_id}/queries/{query_id}/close")
def close_query(
    request: Request,
    order_id: RowId,
    query_id: RowId,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    row_version: RowVersion,
    status: Annotated[str, Form(pattern="^(closed|cancelled)$")],
    action_key: ActionKey = "",
) -> Response:
    queue.close_query(actor, order_id, row_version, query_id, status, action_key)
    return _after(request, session, order_id, "query_closed", user)


@router.get("/orders/{order_id}/diagnosis-check")
def diagnosis_check(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    session: SessionDep,
    queue: QueueDep,
    new_code: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """The typed code checked against the order's date of service, shown beside the field."""
    order = load_order(session, order_id)
    check = queue.check_code(order, new_code)
    return render(request, "partials/code_check.html", {"check": check, "typed": new_code})


@router.post("/orders/{order_id}/corrections")
def correct(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    row_version: RowVersion,
    contact_id: FormId,
    new_code: Annotated[str, Form(max_length=40)] = "",
    kind: Annotated[str, Form(pattern="^(diagnosis|test|remove|npi)$")] = "diagnosis",
    replaces: Annotated[str, Form(max_length=40)] = "",
    test_seq: Annotated[int | None, Form(ge=1, le=MAX_DB_INT)] = None,
    system: Annotated[str, Form(max_length=40)] = "",
    npi: Annotated[str, Form(max_length=20)] = "",
    action_key: ActionKey = "",
) -> Response:
    result: ActionResult
    if kind == "test":
        result = queue.correct_test(
            actor,
            order_id,
            row_version,
            contact_id=contact_id,
            test_seq=test_seq or 0,
            new_code=new_code,
            system=system,
            action_key=action_key,
        )
    elif kind == "remove":
        result = queue.remove_diagnosis(
            actor,
            order_id,
            row_version,
            contact_id=contact_id,
            code=replaces,
            action_key=action_key,
        )
    elif kind == "npi":
        result = queue.correct_provider_npi(
            actor, order_id, row_version, contact_id=contact_id, npi=npi, action_key=action_key
        )
    else:
        result = queue.correct_diagnosis(
            actor,
            order_id,
            row_version,
            contact_id=contact_id,
            new_code=new_code,
            replaces=replaces,
            action_key=action_key,
        )
    return _after(request, session, order_id, _corrected(kind, result), user)


def _corrected(kind: str, result: ActionResult) -> str:
    """What a correction led to: no hold left (on to the next order while the worker releases
    this one), or the order still held (stay on it, focus on what is left)."""
    if result.order.status in (OrderStatus.VERIFIED, *RELEASED_STATUSES):
        return HOLDS_CLEARED
    return "removed" if kind == "remove" else "corrected"


@router.post("/orders/{order_id}/notes")
def note(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    session: SessionDep,
    text: Text = "",
) -> Response:
    """An internal note: changes nothing about the order, so no page goes stale."""
    add_note(session, order_id, user.username, text, "web")
    return go_to(request, f"/orders/{order_id}?done=noted#notes")


@router.post("/orders/{order_id}/release")
def release(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    row_version: RowVersion,
    action_key: ActionKey = "",
    override_reason: Text = "",
    modifier: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    result = queue.release(
        actor,
        order_id,
        row_version,
        override_reason=override_reason,
        modifier=modifier,
        action_key=action_key,
    )
    done = ALREADY_RELEASED if result.note == ALREADY_RELEASED else "released"
    return _after(request, session, order_id, done, user)


@router.post("/orders/{order_id}/reject")
def reject(
    request: Request,
    order_id: RowId,
    user: CoderUser,
    actor: CoderActor,
    session: SessionDep,
    queue: QueueDep,
    row_version: RowVersion,
    reason: Text = "",
    category: Annotated[str, Form(max_length=200)] = "",
    action_key: ActionKey = "",
) -> Response:
    queue.reject(
        actor,
        order_id,
        row_version,
        reason=reason,
        category=category,
        action_key=action_key,
    )
    return _after(request, session, order_id, "rejected", user)
