"""Sign in and out of the web screen.

Login CSRF: `GET /login` gives the browser a random pre-session cookie (`labintake_login`,
HttpOnly, SameSite=Strict) and puts a signed copy of it in the form. A sign-in is taken only
when the form's token was signed by this service, is under an hour old and names the very
cookie the browser sends, so another site cannot sign a victim's browser in to an account of
its choosing. The pre-session cookie is dropped once signed in.

Before any password is checked, the attempt passes the sign-in throttle (per client address
and per account, `labintake.auth.throttle`: 429 over it) and then waits briefly for one of the
process's hashing slots (`labintake.auth.hashing`: 503 when none frees up).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from labintake.auth.policy import LoginPolicy
from labintake.auth.sessions import close_session, open_session, purge_expired
from labintake.auth.signin import check_password
from labintake.auth.throttle import SignInThrottle
from labintake.auth.tokens import tokens_match
from labintake.config import Settings
from labintake.errors import BusyError, NotAuthenticatedError, TooManyAttemptsError
from labintake.web.deps import (
    PASSWORD_CHANGE_PATH,
    SESSION_COOKIE,
    CurrentUser,
    PolicyDep,
    SessionDep,
    SettingsDep,
)

router = APIRouter()

LOGIN_COOKIE = "labintake_login"
_LOGIN_FORM_MAX_AGE = 3600
_EXPIRED = "The sign-in form expired; please try again."


def _signer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.settings.secret_key, salt="login-form")


def _throttle(request: Request) -> SignInThrottle:
    throttle: SignInThrottle = request.app.state.sign_in_throttle
    return throttle


def client_address(request: Request) -> str:
    return (request.client.host if request.client else "")[:200]


def _safe_next(target: str) -> str:
    """Only local paths: never redirect off-site after login."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _browser_nonce(request: Request) -> str:
    """The browser's pre-session value: the one its cookie holds, or a new one."""
    current = request.cookies.get(LOGIN_COOKIE, "")
    if 20 <= len(current) <= 100 and current.isascii():
        return current
    return secrets.token_urlsafe(32)


def _form_is_this_browsers(request: Request, login_token: str) -> bool:
    """The token was signed here within the hour, for the pre-session cookie sent now."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    try:
        signed = _signer(request).loads(login_token, max_age=_LOGIN_FORM_MAX_AGE)
    except BadSignature:
        return False
    return bool(cookie) and isinstance(signed, str) and tokens_match(cookie, signed)


def _login_page(
    request: Request,
    error: str = "",
    username: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    templates = request.app.state.templates
    nonce = _browser_nonce(request)
    response: Response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "error": error,
            "username": username,
            "next": _safe_next(request.query_params.get("next", "/")),
            "login_token": _signer(request).dumps(nonce),
        },
        status_code=status,
        headers=headers,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        secure=not request.app.state.settings.development,
        samesite="strict",
        path="/login",
        max_age=_LOGIN_FORM_MAX_AGE,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    policy: PolicyDep,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    login_token: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    if not _form_is_this_browsers(request, login_token):
        return _login_page(request, _EXPIRED, username, 400)
    client = client_address(request)
    try:
        _throttle(request).admit(client, username)
        user = check_password(session, username, password, policy, client=client)
    except (TooManyAttemptsError, BusyError) as exc:
        status = 429 if isinstance(exc, TooManyAttemptsError) else 503
        retry = {"Retry-After": str(exc.retry_after)}
        return _login_page(request, str(exc).capitalize() + ".", username, status, retry)
    except NotAuthenticatedError as exc:
        return _login_page(request, str(exc).capitalize() + ".", username, 401)
    purge_expired(session, policy)  # sessions left idle are deleted as people sign in
    token, _ = open_session(session, user, client)
    session.commit()
    target = PASSWORD_CHANGE_PATH if user.must_change_password else _safe_next(next)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, token, settings, policy)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def set_session_cookie(
    response: Response, token: str, settings: Settings, policy: LoginPolicy
) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure outside development."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=not settings.development,
        samesite="strict",
        path="/",
        max_age=int(policy.max_session_age.total_seconds()),
    )


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        close_session(session, cookie)
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
