"""Every page and API route refuses anonymous callers and roles below the one it needs.

The routes are enumerated from `app.routes`, so a route added later without a role check
fails here rather than slipping through.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.web.app import create_app, iter_routes
from labintake.web.deps import required_role_of
from tests.factories import make_token, make_user

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/static"),  # CSS, JS
}
# Routes open to anyone signed in, whatever the role (still refused to anonymous callers).
ANY_ROLE = {("POST", "/logout")}


def _routes(settings: Settings, engine: Engine) -> list[tuple[str, str, APIRoute | None]]:
    return list(iter_routes(create_app(settings, engine)))


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_but_the_public_ones_declares_a_role(
    settings: Settings, engine: Engine
) -> None:
    missing = [
        (method, path)
        for method, path, route in _routes(settings, engine)
        if (method, path) not in PUBLIC | ANY_ROLE
        and (route is None or required_role_of(route.dependant) is None)
    ]
    assert missing == []


def test_every_protected_route_refuses_anonymous_callers(
    settings: Settings, engine: Engine
) -> None:
    client = TestClient(create_app(settings, engine))
    checked = 0
    for method, path, _ in _routes(settings, engine):
        if (method, path) in PUBLIC:
            continue
        response = client.request(method, _concrete(path), follow_redirects=False)
        if path.startswith("/api/"):
            assert response.status_code == 401, (method, path, response.status_code)
        else:
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login"), (method, path)
        checked += 1
    assert checked >= 20


def test_every_route_refuses_roles_below_the_one_it_needs(
    settings: Settings, engine: Engine
) -> None:
    tokens = {}
    for role in Role:
        make_user(engine, f"user-{role.value}", role)
        tokens[role] = make_token(engine, f"user-{role.value}")
    client = TestClient(create_app(settings, engine))
    refused = 0
    for method, path, route in _routes(settings, engine):
        needed = required_role_of(route.dependant) if route is not None else None
        if needed is None:
            continue
        for role in Role:
            if role.allows(needed):
                continue
            response = client.request(
                method,
                _concrete(path),
                headers={"Authorization": f"Bearer {tokens[role]}", "Accept": "application/json"},
                follow_redirects=False,
            )
            assert response.status_code == 403, (method, path, role, response.status_code)
            refused += 1
    assert refused >= 4  # the manager-only routes, tried as a coder


def test_a_bad_or_revoked_bearer_token_is_refused(settings: Settings, engine: Engine) -> None:
    client = TestClient(create_app(settings, engine))
    response = client.get("/api/orders", headers={"Authorization": "Bearer lbi_not-a-token"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    response = client.get("/api/orders", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/queue", "/orders/1", "/messages/errors"])
def test_pages_send_anonymous_users_to_the_login_page_and_back(
    settings: Settings, engine: Engine, path: str
) -> None:
    client = TestClient(create_app(settings, engine))
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


def test_ids_out_of_the_database_range_are_not_found_rather_than_server_errors(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "meg", Role.MANAGER)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {make_token(engine, 'meg')}"
    huge = 10**20
    assert client.get(f"/api/orders/{huge}").status_code == 422
    assert client.get(f"/api/orders/{huge}/message").status_code == 422
    assert client.get("/api/orders", params={"cursor": str(huge)}).status_code == 409
    assert client.get("/api/messages", params={"cursor": huge}).status_code == 422
    body = {"row_version": huge, "reason": "x"}
    assert client.post("/api/orders/1/reject", json=body).status_code == 422
