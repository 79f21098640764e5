"""The web app: `create_app(settings, engine)` builds the FastAPI application.

To add a screen or API resource, write `labintake/web/routes/<noun>.py` exposing
`router = APIRouter()` whose routes depend on `require_role(...)` (see `labintake.web.deps`),
then add the router to `ROUTERS` below. Routes stay thin: validate, call a service, render.
Exceptions from `labintake.errors` become HTTP answers in `labintake.web.errors` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.routing import Mount, Route

from labintake import __version__
from labintake.auth.policy import DEFAULT_POLICY, LoginPolicy
from labintake.auth.throttle import SignInThrottle
from labintake.config import Settings
from labintake.web import openapi
from labintake.web.errors import install_error_handlers
from labintake.web.routes import (
    account,
    admin_users,
    api_orders,
    api_schema,
    dashboard,
    health,
    icd10,
    login,
    message_errors,
    notices,
    office_queries,
    orders,
    queue,
    stats,
)
from labintake.web.security import SecureHeadersMiddleware
from labintake.web.signin_gate import SignInGateMiddleware
from labintake.web.templating import make_templates

STATIC_DIR = Path(__file__).parent / "static"

# Every router of the app, in order. Public routes: /healthz, /login and /static only.
ROUTERS: list[APIRouter] = [
    health.router,
    login.router,
    queue.router,
    orders.router,
    office_queries.router,
    icd10.router,
    message_errors.router,
    notices.router,
    api_orders.router,
    api_schema.router,
    dashboard.router,
    stats.router,
    account.router,
    admin_users.router,
]


def create_app(
    settings: Settings, engine: Engine, *, login_policy: LoginPolicy = DEFAULT_POLICY
) -> FastAPI:
    """The web screen and JSON API over `engine` (the schema must be migrated already)."""
    app = FastAPI(
        title="labintake",
        summary="Clarification queue and order API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by routes/api_schema.py, behind the API's sign-in
    )
    openapi.install(app)
    templates = make_templates()
    app.state.settings = settings
    app.state.engine = engine
    app.state.login_policy = login_policy
    app.state.sign_in_throttle = SignInThrottle(
        settings.login_rate_per_address, settings.login_rate_per_account
    )
    app.state.templates = templates
    install_error_handlers(app, templates)
    # The gate answers throttled sign-ins before any of the app runs; the headers go on
    # its answers too (the middleware added last is the outermost).
    app.add_middleware(SignInGateMiddleware)
    app.add_middleware(SecureHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


def iter_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute | None]]:
    """Every (method, path, route) the app answers, through included routers; the route is
    None for plain Starlette routes (the OpenAPI document) and mounts (static files)."""

    def walk(routes: Iterable[Any], prefix: str) -> Iterator[tuple[str, str, APIRoute | None]]:
        for route in routes:
            if isinstance(route, APIRoute):
                for method in sorted((route.methods or set()) - {"HEAD"}):
                    yield method, prefix + route.path, route
            elif isinstance(route, Route):
                for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                    yield method, prefix + route.path, None
            elif isinstance(route, Mount):
                yield "GET", prefix + route.path, None
            elif hasattr(route, "original_router"):  # FastAPI's included-router wrapper
                context = getattr(route, "include_context", None)
                extra = getattr(context, "prefix", "") or ""
                yield from walk(route.original_router.routes, prefix + extra)

    yield from walk(app.routes, "")
