"""The error queue: messages that could not be read, and reprocessing them (managers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from labintake import audit
from labintake.intake.refusals import intake_refusals
from labintake.queue import integration
from labintake.web.deps import MAX_DB_INT, ManagerUser, RowId, SessionDep, SettingsDep, get_engine
from labintake.web.rendering import render
from labintake.web.responses import go_to
from labintake.web.schemas.messages import ErrorMessageList, ReprocessOutcome

router = APIRouter()


@router.get("/messages/errors")
def error_queue_page(
    request: Request, user: ManagerUser, after: int = Query(0, ge=0, le=MAX_DB_INT)
) -> Response:
    engine = get_engine(request)
    rows = integration.error_queue(engine, limit=100, after_id=after)
    refused_count, refusals = intake_refusals(engine)
    return render(
        request,
        "errors.html",
        {
            "rows": rows,
            "done": request.query_params.get("done", ""),
            "after": after,
            "refused_count": refused_count,
            "refusals": refusals,
        },
    )


@router.post("/messages/{message_id}/reprocess")
def reprocess_page(
    request: Request,
    message_id: RowId,
    user: ManagerUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    outcome = integration.reprocess(get_engine(request), settings, message_id, user.username)
    audit.record(
        session,
        user.username,
        "reprocess_message",
        message_id=message_id,
        via="web",
        after={"status": str(outcome.status), "order_ids": list(outcome.order_ids)},
    )
    session.commit()
    return go_to(request, f"/messages/errors?done={outcome.status}")


@router.get("/api/messages", response_model=ErrorMessageList, tags=["messages"])
def list_messages(
    request: Request,
    user: ManagerUser,
    status: str = Query("error", pattern="^error$"),
    limit: int = Query(50, ge=1, le=500),
    cursor: int = Query(0, ge=0, le=MAX_DB_INT),
) -> dict[str, Any]:
    rows = integration.error_queue(get_engine(request), limit=limit, after_id=cursor)
    return {
        "messages": [
            {
                "id": r.message_id,
                "received_at": r.received_at.isoformat(),
                "sending_application": r.sending_application,
                "sending_facility": r.sending_facility,
                "control_id": r.control_id,
                "message_type": r.message_type,
                "error": r.error,
                "read_attempts": r.read_attempts,
            }
            for r in rows
        ],
        "next_cursor": rows[-1].message_id if len(rows) == limit else None,
    }


@router.post(
    "/api/messages/{message_id}/reprocess", response_model=ReprocessOutcome, tags=["messages"]
)
def reprocess_api(
    request: Request,
    message_id: RowId,
    user: ManagerUser,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    outcome = integration.reprocess(get_engine(request), settings, message_id, user.username)
    audit.record(
        session,
        user.username,
        "reprocess_message",
        message_id=message_id,
        via="api",
        after={"status": str(outcome.status), "order_ids": list(outcome.order_ids)},
    )
    session.commit()
    return {
        "message_id": outcome.message_id,
        "status": str(outcome.status),
        "error": outcome.error,
        "previous_error": outcome.previous_error,
        "order_ids": list(outcome.order_ids),
    }
