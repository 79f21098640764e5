"""Request dependencies: database session, settings, the signed-in user and role checks.

Every route other than the public ones (`/healthz`, `/login`, `/static`) must depend on
`require_role(...)`, directly or through an alias below; `tests/test_web_routes.py` walks
`app.routes` and fails for any route that does not refuse anonymous callers and wrong roles::

    from labintake.web.deps import CoderUser, SessionDep

    @router.get("/api/things")
    def list_things(user: CoderUser, session: SessionDep) -> list[Thing]:
        return things.list_things(session)          # queries live in a service, not here

An action on an order takes the queue and the actor as dependencies (`CoderActor` carries
the coder role check)::

    @router.post("/api/orders/{order_id}/assign")
    def assign(order_id: RowId, body: AssignBody, actor: CoderActor, queue: QueueDep) -> ...:
        queue.assign(actor, order_id, body.row_version, body.assignee)

A signed-in browser authenticates with the session cookie; state-changing requests made
with the cookie must carry the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`). Scripts authenticate with `Authorization: Bearer <token>` (no CSRF: no
cookie is involved).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labintake.auth.policy import LoginPolicy
from labintake.auth.roles import Role
from labintake.auth.sessions import resolve_session
from labintake.auth.tokens import resolve_token, tokens_match
from labintake.config import Settings
from labintake.errors import (
    NotAuthenticatedError,
    PasswordChangeRequiredError,
    PermissionDeniedError,
)
from labintake.models.users import User, WebSession
from labintake.queue.service import Actor, ClarificationQueue

SESSION_COOKIE = "labintake_session"
# Ids and versions are 32-bit integers in the database: larger values cannot exist.
MAX_DB_INT = 2**31 - 1
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Open to a browser session whose user must choose a new password first; nothing else is.
PASSWORD_CHANGE_PATH = "/account/password"  # noqa: S105 - a path, not a password
_OPEN_BEFORE_PASSWORD_CHANGE = frozenset({PASSWORD_CHANGE_PATH, "/logout"})


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_policy(request: Request) -> LoginPolicy:
    policy: LoginPolicy = request.app.state.login_policy
    return policy


def get_session(request: Request) -> Iterator[Session]:
    """One database session per request; services commit explicitly."""
    with Session(get_engine(request), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
RowId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PolicyDep = Annotated[LoginPolicy, Depends(get_policy)]


@dataclass(slots=True)
class Principal:
    """Who is calling and how: a browser session (`web_session` set) or a bearer token."""

    user: User
    via: str  # "web" | "api"
    web_session: WebSession | None = None

    @property
    def role(self) -> Role:
        return Role(self.user.role)


def _authenticate(request: Request, session: SessionDep, policy: PolicyDep) -> Principal:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticatedError("use 'Authorization: Bearer <token>'")
        user = resolve_token(session, token.strip())
        if user is None:
            raise NotAuthenticatedError("unknown or revoked API token")
        return Principal(user=user, via="api")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = resolve_session(session, cookie, policy)
        if found is not None:
            web_session, user = found
            return Principal(user=user, via="web", web_session=web_session)
    raise NotAuthenticatedError("sign in first")


async def get_principal(
    request: Request, principal: Annotated[Principal, Depends(_authenticate)]
) -> Principal:
    """The authenticated caller; cookie-authenticated state changes must carry the CSRF token.
    A browser whose user must change the password reaches only the password page (and
    sign-out) until it is changed."""
    if request.method not in SAFE_METHODS and principal.web_session is not None:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD, "")
            sent = value if isinstance(value, str) else ""
        if not sent or not tokens_match(sent, principal.web_session.csrf_token):
            raise PermissionDeniedError(
                "the form's security token is missing or stale; reload the page and try again"
            )
    request.state.principal = principal
    if (
        principal.web_session is not None
        and principal.user.must_change_password
        and request.url.path not in _OPEN_BEFORE_PASSWORD_CHANGE
    ):
        raise PasswordChangeRequiredError("choose a new password first")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


@cache
def require_role(role: Role) -> Callable[..., User]:
    """A dependency admitting users whose role is `role` or above (coder < manager < admin)."""

    def dependency(principal: CurrentPrincipal) -> User:
        if not principal.role.allows(role):
            raise PermissionDeniedError(f"this needs the {role} role")
        return principal.user

    dependency.required_role = role  # type: ignore[attr-defined]  # read by the route tests
    dependency.__name__ = f"require_{role}"
    return dependency


CoderUser = Annotated[User, Depends(require_role(Role.CODER))]
ManagerUser = Annotated[User, Depends(require_role(Role.MANAGER))]
AdminUser = Annotated[User, Depends(require_role(Role.ADMIN))]


def get_actor(principal: CurrentPrincipal, user: CoderUser) -> Actor:
    """Who acts on an order (a coder or above), and how: "web" (session) or "api" (token)."""
    return Actor.of(user, principal.via)


def get_queue(session: SessionDep, settings: SettingsDep) -> ClarificationQueue:
    """The coder's actions on this request's database session."""
    return ClarificationQueue(session, settings)


CoderActor = Annotated[Actor, Depends(get_actor)]
QueueDep = Annotated[ClarificationQueue, Depends(get_queue)]


def required_role_of(dependant: Any) -> Role | None:
    """The strictest role a route's dependency tree requires (None for a public route)."""
    found: list[Role] = []
    stack = [dependant]
    while stack:
        current = stack.pop()
        role = getattr(current.call, "required_role", None)
        if isinstance(role, Role):
            found.append(role)
        stack.extend(current.dependencies)
    return max(found, key=lambda r: r.rank) if found else None
