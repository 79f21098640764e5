"""Administration of users on the screen (admins only): list, add, change role, reset the
password, lift a lockout, deactivate and reactivate, list and revoke API tokens.

Every change goes through `labintake.auth.accounts` or `labintake.auth.tokens`, which apply
the password policy, end sessions and tokens where a change calls for it, refuse to leave
no active administrator, and audit who did what to whom (via "web"). A refusal is shown
beside the field at fault, as a sentence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from labintake.auth import accounts
from labintake.auth.directory import (
    account_history,
    get_account,
    is_locked,
    list_accounts,
    temporary_password,
)
from labintake.auth.roles import Role
from labintake.auth.tokens import revoke_token_of, tokens_of
from labintake.errors import WorkflowError
from labintake.models.users import User
from labintake.web.deps import AdminUser, PolicyDep, RowId, SessionDep
from labintake.web.rendering import render, sentence
from labintake.web.responses import go_to

router = APIRouter()

_DONE = "^(added|role|password|unlocked|deactivated|reactivated|revoked|unchanged)$"
Text = Annotated[str, Form(max_length=1000)]


@contextmanager
def _refusals_as_sentences() -> Iterator[None]:
    try:
        yield
    except WorkflowError as exc:
        raise WorkflowError(sentence(str(exc)), field=exc.field) from None


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise WorkflowError("Choose a role: coder, manager or admin.", field="role") from None


def _same_twice(password: str, repeat: str, field: str) -> None:
    if password != repeat:
        raise WorkflowError("The two passwords differ; type the same password twice.", field=field)


@router.get("/admin/users")
def users_page(
    request: Request, admin: AdminUser, session: SessionDep, policy: PolicyDep
) -> Response:
    return render(
        request,
        "admin_users.html",
        {"accounts": list_accounts(session), "roles": list(Role), "policy": policy},
    )


@router.post("/admin/users")
def add_user(
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    policy: PolicyDep,
    username: Annotated[str, Form(max_length=200)] = "",
    display_name: Annotated[str, Form(max_length=300)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: Text = "",
    password_repeat: Text = "",
    must_change: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    chosen = _role(role)
    _same_twice(password, password_repeat, "password_repeat")
    with _refusals_as_sentences():
        user = accounts.create_user(
            session,
            username,
            chosen,
            password,
            display_name=display_name,
            policy=policy,
            must_change_password=bool(must_change),
            actor=admin.username,
            via="web",
        )
    session.commit()
    return go_to(request, f"/admin/users/{user.id}?done=added")


@router.get("/admin/users/{user_id}")
def user_page(
    request: Request,
    user_id: RowId,
    admin: AdminUser,
    session: SessionDep,
    done: Annotated[str, Query(pattern=_DONE)] = "",
) -> Response:
    return _render_user(request, session, get_account(session, user_id), admin, done=done)


def _render_user(
    request: Request,
    session: SessionDep,
    user: User,
    admin: User,
    *,
    done: str = "",
    temporary: str = "",
) -> Response:
    # A password reset made through HTMX swaps in the page's content only.
    partial = temporary and request.headers.get("hx-request")
    return render(
        request,
        "partials/admin_user_body.html" if partial else "admin_user.html",
        {
            "account": user,
            "locked": is_locked(user),
            "tokens": tokens_of(session, user),
            "history": account_history(session, user),
            "roles": list(Role),
            "is_self": user.id == admin.id,
            "done": done,
            "temporary": temporary,
        },
    )


def _after_change(request: Request, user: User, admin: User, done: str) -> Response:
    """Back to the user's page; to sign-in when the change ended the admin's own session."""
    if user.id == admin.id and done == "role":
        return go_to(request, "/login")
    return go_to(request, f"/admin/users/{user.id}?done={done}")


@router.post("/admin/users/{user_id}/role")
def change_role(
    request: Request,
    user_id: RowId,
    admin: AdminUser,
    session: SessionDep,
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    user = get_account(session, user_id)
    chosen = _role(role)
    with _refusals_as_sentences():
        changed = accounts.set_role(session, user, chosen, actor=admin.username, via="web")
    session.commit()
    return _after_change(request, user, admin, "role" if changed else "unchanged")


@router.post("/admin/users/{user_id}/password")
def reset_password(
    request: Request,
    user_id: RowId,
    admin: AdminUser,
    session: SessionDep,
    policy: PolicyDep,
    mode: Annotated[str, Form(pattern="^(temporary|chosen)$")] = "temporary",
    password: Text = "",
    password_repeat: Text = "",
    must_change: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A temporary password (shown once, to be changed at the next sign-in), or one the
    administrator chose. Either way a lockout is lifted and sessions and tokens end."""
    user = get_account(session, user_id)
    if user.id == admin.id:
        raise WorkflowError(
            "Change your own password on your password page, with your current one.",
            field="mode",
        )
    if mode == "temporary":
        password, must = temporary_password(policy), True
    else:
        _same_twice(password, password_repeat, "password_repeat")
        must = bool(must_change)
    with _refusals_as_sentences():
        accounts.set_password(
            session, user, password, policy, actor=admin.username, via="web", must_change=must
        )
    session.commit()
    if mode == "chosen":
        return _after_change(request, user, admin, "password")
    # Shown in this answer only: not in a URL, not stored, never shown again.
    return _render_user(request, session, user, admin, done="password", temporary=password)


@router.post("/admin/users/{user_id}/unlock")
def unlock(request: Request, user_id: RowId, admin: AdminUser, session: SessionDep) -> Response:
    user = get_account(session, user_id)
    changed = accounts.unlock_user(session, user, actor=admin.username, via="web")
    session.commit()
    return _after_change(request, user, admin, "unlocked" if changed else "unchanged")


@router.post("/admin/users/{user_id}/deactivate")
def deactivate(request: Request, user_id: RowId, admin: AdminUser, session: SessionDep) -> Response:
    user = get_account(session, user_id)
    with _refusals_as_sentences():
        changed = accounts.deactivate_user(session, user, actor=admin.username, via="web")
    session.commit()
    if changed and user.id == admin.id:
        return go_to(request, "/login")
    return _after_change(request, user, admin, "deactivated" if changed else "unchanged")


@router.post("/admin/users/{user_id}/reactivate")
def reactivate(request: Request, user_id: RowId, admin: AdminUser, session: SessionDep) -> Response:
    user = get_account(session, user_id)
    changed = accounts.reactivate_user(session, user, actor=admin.username, via="web")
    session.commit()
    return _after_change(request, user, admin, "reactivated" if changed else "unchanged")


@router.post("/admin/users/{user_id}/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, user_id: RowId, token_id: RowId, admin: AdminUser, session: SessionDep
) -> Response:
    user = get_account(session, user_id)
    changed = revoke_token_of(session, user, token_id, actor=admin.username, via="web")
    session.commit()
    return _after_change(request, user, admin, "revoked" if changed else "unchanged")
