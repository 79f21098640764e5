"""Sign in and out of the web screen."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from labintake.auth.accounts import check_password
from labintake.auth.sessions import close_session, open_session, purge_expired
from labintake.errors import NotAuthenticatedError
from labintake.web.deps import SESSION_COOKIE, CurrentUser, PolicyDep, SessionDep, SettingsDep

router = APIRouter()

_LOGIN_FORM_MAX_AGE = 3600


def _signer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.settings.secret_key, salt="login-form")


def _safe_next(target: str) -> str:
    """Only local paths: never redirect off-site after login."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _login_page(
    request: Request, error: str = "", username: str = "", status: int = 200
) -> Response:
    templates = request.app.state.templates
    response: Response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "error": error,
            "username": username,
            "next": _safe_next(request.query_params.get("next", "/")),
            "login_token": _signer(request).dumps("login"),
        },
        status_code=status,
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
    try:
        _signer(request).loads(login_token, max_age=_LOGIN_FORM_MAX_AGE)
    except BadSignature:
        return _login_page(request, "The sign-in form expired; please try again.", username, 400)
    try:
        user = check_password(session, username, password, policy)
    except NotAuthenticatedError as exc:
        session.commit()  # failed-login counts and lockouts stick
        return _login_page(request, str(exc).capitalize() + ".", username, 401)
    client = (request.client.host if request.client else "")[:200]
    purge_expired(session, policy)  # sessions left idle are deleted as people sign in
    token, _ = open_session(session, user, client)
    session.commit()
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=not settings.development,
        samesite="strict",
        path="/",
        max_age=int(policy.max_session_age.total_seconds()),
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        close_session(session, cookie)
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
