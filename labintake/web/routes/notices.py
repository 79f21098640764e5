"""Notices: follow-ups due, escalations, summaries and dead letters, seen and marked done."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from labintake.auth.roles import Role
from labintake.queue.notices import list_notices, mark_done
from labintake.web.deps import CoderUser, RowId, SessionDep
from labintake.web.rendering import render
from labintake.web.responses import go_to

router = APIRouter()


@router.get("/notices")
def notices_page(
    request: Request,
    user: CoderUser,
    session: SessionDep,
    show: str = Query("open", pattern="^(open|done)$"),
) -> Response:
    role = Role(user.role)
    return render(
        request,
        "notices.html",
        {
            "notices": list_notices(session, role, done=show == "done"),
            "show": show,
            "marked": request.query_params.get("marked", ""),
        },
    )


@router.post("/notices/{notice_id}/done")
def notice_done(
    request: Request, notice_id: RowId, user: CoderUser, session: SessionDep
) -> Response:
    mark_done(session, notice_id, user.username, Role(user.role), "web")
    return go_to(request, "/notices?marked=1")
