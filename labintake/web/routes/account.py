"""The signed-in user's own password: changed with the current one, and required after an
administrator set it (see `labintake.web.deps.get_principal`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from labintake.auth.accounts import change_own_password
from labintake.auth.sessions import open_session
from labintake.errors import WorkflowError
from labintake.web.deps import PASSWORD_CHANGE_PATH, CoderUser, PolicyDep, SessionDep, SettingsDep
from labintake.web.rendering import render, sentence
from labintake.web.routes.login import client_address, set_session_cookie

router = APIRouter()
Text = Annotated[str, Form(max_length=1000)]


@router.get(PASSWORD_CHANGE_PATH)
def password_page(
    request: Request,
    user: CoderUser,
    policy: PolicyDep,
    changed: Annotated[str, Query(pattern="^1$")] = "",
) -> Response:
    return render(request, "account_password.html", {"policy": policy, "changed": changed})


@router.post(PASSWORD_CHANGE_PATH)
def change_password(
    request: Request,
    user: CoderUser,
    session: SessionDep,
    settings: SettingsDep,
    policy: PolicyDep,
    current_password: Text = "",
    new_password: Text = "",
    new_password_repeat: Text = "",
) -> Response:
    """Every session and token of the user ends with the change; this browser gets a new
    session, so the user stays signed in here."""
    if new_password != new_password_repeat:
        raise WorkflowError(
            "The two new passwords differ; type the same password twice.",
            field="new_password_repeat",
        )
    try:
        change_own_password(session, user, current_password, new_password, policy)
    except WorkflowError as exc:
        raise WorkflowError(sentence(str(exc)), field=exc.field) from None
    token, _ = open_session(session, user, client_address(request))
    session.commit()
    target = f"{PASSWORD_CHANGE_PATH}?changed=1"
    if request.headers.get("hx-request"):
        response: Response = Response(status_code=200, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, token, settings, policy)
    return response
