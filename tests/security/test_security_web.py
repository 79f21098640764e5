"""Security of the web screen and API: the whole role matrix, CSRF on every state change,
hostile HL7 text inert on every screen, injection attempts in every search field, and no
secret in the logs. Routes come from `app.routes`, so a route added later is covered.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.interfaces import load_interfaces
from labintake.logs import configure_logging
from labintake.reading.worker import read_until_empty
from labintake.web.app import create_app, iter_routes
from labintake.web.deps import required_role_of
from tests.factories import PASSWORD, OrderSpec, held_order, make_token, make_user, store_message
from tests.web_client import login

PUBLIC = {("GET", "/healthz"), ("GET", "/login"), ("POST", "/login"), ("GET", "/static")}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}

SCRIPT = "<script>alert('lbi')</script>"
IMAGE = '<img src=x onerror="alert(1)">'
SVG = "</textarea><svg onload=alert(2)>"
HOSTILE_MARKERS = ("<script>alert(", "<img src=x", "<svg onload", 'onerror="alert')

# Search fields that take free text: any input is a search, answered 200 with what matches.
FREE_TEXT = {"q", "office", "sender", "patient", "control_id", "placer_order"}
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE lab_order; --",
    '" OR ""="',
    "%",
    "_",
    "\\",
    "%' UNION SELECT password_hash FROM app_user --",
    "1; SELECT pg_sleep(5)",
    "\u0000",
    "ü' OR 1=1 /*",
]


@dataclass
class Site:
    client: TestClient
    tokens: dict[Role, str]
    order_id: int
    message_id: int
    routes: list[tuple[str, str, APIRoute | None]]
    user_id: int  # a bystander account for the admin routes: not one of the callers

    def concrete(self, path: str) -> str:
        path = path.replace("{order_id}", str(self.order_id))
        path = path.replace("{message_id}", str(self.message_id))
        path = path.replace("{name}", "holds")
        path = path.replace("{user_id}", str(self.user_id))
        return re.sub(r"\{[^}]+\}", "1", path)

    def bearer(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", "Accept": "application/json"}


def _hostile_spec() -> OrderSpec:
    return OrderSpec(
        control_id="SEC0001",
        placer="SEC-PL-1",
        family=f"O'Hostile{SCRIPT}",
        given=IMAGE,
        mrn="SECMRN1",
        office=f"Office {SVG}\x07\x1b[31m",
        tests=[("83036", f"A1C {SCRIPT}")],
        diagnoses=[("E11", f"Diabetes {IMAGE}")],
        note=f"call back {SCRIPT}\x1b[2J",
    )


def _broken_message(engine: Engine, settings: Settings) -> int:
    """A message the reader refuses (no PID), carrying hostile text, in the error queue."""
    raw = (
        "MSH|^~\\&|PRAXIS|PRAIRIEFM|LABINTAKE|REFLAB|20260315083000||ORM^O01|SEC0002|P|2.3.1\r"
        f"ORC|NW|{SCRIPT}\rOBR|1|{IMAGE}||83036^{SVG}^CPT\r"
    ).encode()
    message_id = store_message(engine, raw, "SEC0002")
    read_until_empty(engine, load_interfaces(settings.interfaces_dir))
    return message_id


@pytest.fixture
def site(settings: Settings, engine: Engine) -> Iterator[Site]:
    tokens = {}
    for role in Role:
        make_user(engine, f"sec-{role.value}", role)
        tokens[role] = make_token(engine, f"sec-{role.value}")
    # The admin routes change an account (role, password, deactivate) and end its sessions
    # and tokens: they act on a bystander, so the callers' tokens stay valid.
    bystander = make_user(engine, "sec-bystander", Role.CODER)
    assert bystander.id is not None
    order_id = held_order(engine, settings, _hostile_spec())
    message_id = _broken_message(engine, settings)
    app = create_app(settings, engine)
    with TestClient(app) as client:
        yield Site(client, tokens, order_id, message_id, list(iter_routes(app)), bystander.id)


def test_every_route_and_role_gets_exactly_what_the_role_allows(site: Site) -> None:
    """The whole matrix: allowed roles get past authorization, the others get 403."""
    cells = 0
    for method, path, route in site.routes:
        needed = required_role_of(route.dependant) if route is not None else None
        if needed is None:
            continue
        for role in Role:
            response = site.client.request(
                method, site.concrete(path), headers=site.bearer(role), follow_redirects=False
            )
            cells += 1
            if role.allows(needed):
                assert response.status_code not in (401, 403), (method, path, role)
                assert response.status_code < 500, (method, path, role, response.text[:300])
            else:
                assert response.status_code == 403, (method, path, role, response.status_code)
    assert cells >= 3 * 30
    print(f"\nauthorization matrix: {cells} route x role cells checked")


def test_every_state_change_with_the_session_cookie_needs_the_csrf_token(
    site: Site, engine: Engine
) -> None:
    csrf = login(site.client, f"sec-{Role.ADMIN.value}")
    before = _order_status(engine, site.order_id)
    refused = 0
    for method, path, _route in site.routes:
        if method not in STATE_CHANGING or (method, path) in PUBLIC or path == "/logout":
            continue
        url = site.concrete(path)
        missing = site.client.request(method, url, data={"row_version": "1"})
        forged = site.client.request(
            method, url, data={"row_version": "1"}, headers={"X-CSRF-Token": "forged"}
        )
        assert missing.status_code == 403, (method, path, missing.status_code)
        assert forged.status_code == 403, (method, path, forged.status_code)
        refused += 2
    assert _order_status(engine, site.order_id) == before
    # The token itself works (the refusals above were about the token, not the session).
    logout = site.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert logout.status_code == 303
    assert refused >= 20


# Larger than any id the database can hold, up to one past a 64-bit integer.
HUGE_IDS = ("2147483648", "9223372036854775807", "9223372036854775808", "1" + "0" * 40)


def test_every_id_in_a_path_beyond_the_database_range_is_refused_not_a_server_error(
    site: Site,
) -> None:
    checked = 0
    for method, path, route in site.routes:
        if route is None:
            continue
        int_params = [p.name for p in route.dependant.path_params if p.field_info.annotation is int]
        for name in int_params:
            for huge in HUGE_IDS:
                url = site.concrete(path.replace("{" + name + "}", huge))
                response = site.client.request(
                    method, url, headers=site.bearer(Role.ADMIN), follow_redirects=False
                )
                assert response.status_code in (404, 422), (method, url, response.status_code)
                checked += 1
    assert checked >= 4 * 20


def test_a_non_ascii_bearer_token_or_csrf_token_is_refused_not_a_server_error(
    site: Site, settings: Settings, engine: Engine
) -> None:
    non_ascii = "Bearer \u00e9".encode()
    scraped = settings.model_copy(update={"metrics_token": "scraper-token-0123456789"})
    with TestClient(create_app(scraped, engine)) as client:
        for path in ("/metrics", "/api/orders", "/api/stats"):
            headers = {"Authorization": non_ascii, "Accept": "application/json"}
            response = client.get(path, headers=headers)  # type: ignore[arg-type]
            assert response.status_code == 401, (path, response.status_code)
        assert client.get("/metrics", headers=site.bearer(Role.CODER)).status_code == 403
    login(site.client, f"sec-{Role.ADMIN.value}")
    forged_token = {"X-CSRF-Token": "\u00e9t\u00e9".encode()}
    forged = site.client.post("/logout", headers=forged_token, follow_redirects=False)  # type: ignore[arg-type]
    assert forged.status_code == 403


def _order_status(engine: Engine, order_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT status FROM lab_order WHERE id = :i"), {"i": order_id}
            ).scalar_one()
        )


def _readable_pages(site: Site) -> Iterator[tuple[str, str]]:
    for method, path, route in site.routes:
        if method == "GET" and route is not None and (method, path) not in PUBLIC:
            yield path, site.concrete(path)


def test_hostile_hl7_text_is_inert_on_every_screen_and_in_every_answer(site: Site) -> None:
    login(site.client, f"sec-{Role.ADMIN.value}")
    shown = 0
    for path, url in _readable_pages(site):
        response = site.client.get(url, headers={"Accept": "text/html"})
        assert response.status_code < 500, (path, response.text[:300])
        body = response.content.decode("utf-8")
        kind = response.headers.get("content-type", "")
        if "text/html" in kind:
            for marker in HOSTILE_MARKERS:
                assert marker not in body, (path, marker)
            assert "default-src 'self'" in response.headers["content-security-policy"]
            shown += "Hostile" in body or "&lt;script&gt;" in body
        elif "json" in kind:
            json.loads(body)  # control characters are escaped, never raw
        else:
            # Raw HL7 and CSV exports are never served as something a browser renders.
            assert "html" not in kind, (path, kind)
            assert "javascript" not in kind, (path, kind)
            assert response.headers.get("x-content-type-options") == "nosniff"
    # The hostile order really was on the screens checked (escaped), not just absent.
    assert shown >= 2, shown
    order_page = site.client.get(f"/orders/{site.order_id}").text
    assert "&lt;script&gt;alert(" in order_page
    assert "\x1b" not in order_page or "&#" in order_page


def _search_parameters(route: APIRoute) -> list[str]:
    """Query parameters that take text (a search box or a filter)."""
    return [
        p.name for p in route.dependant.query_params if p.field_info.annotation in (str, str | None)
    ]


def test_injection_attempts_in_every_search_field_return_normal_empty_results(
    site: Site, engine: Engine
) -> None:
    login(site.client, f"sec-{Role.ADMIN.value}")
    with engine.connect() as conn:
        orders_before = conn.execute(text("SELECT count(*) FROM lab_order")).scalar_one()
    tried = 0
    for method, path, route in site.routes:
        if method != "GET" or route is None:
            continue
        fields = _search_parameters(route)
        if path == "/queue":
            fields = ["q", "office", "sender", "reason", "status", "assignee"]
        for field in fields:
            for payload in INJECTIONS:
                response = site.client.get(
                    site.concrete(path), params={field: payload}, headers=site.bearer(Role.ADMIN)
                )
                tried += 1
                if field in FREE_TEXT and "\x00" not in payload:
                    assert response.status_code == 200, (path, field, payload, response.text)
                else:  # an enumerated filter: a clear refusal is right too, never a 500
                    assert response.status_code < 500, (path, field, payload, response.text)
                if path == "/api/orders" and response.status_code == 200:
                    assert response.json()["orders"] == [], (field, payload)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lab_order")).scalar_one() == orders_before
    assert tried >= 60
    print(f"\ninjection attempts: {tried} requests over every search field, none failed")


def test_passwords_tokens_cookies_and_the_secret_key_never_reach_the_log(
    site: Site, settings: Settings
) -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging(
        settings.model_copy(update={"log_level": "DEBUG", "log_json": True}), stream=buffer
    )
    try:
        login(site.client, f"sec-{Role.CODER.value}")
        site.client.post("/login", data={"username": "sec-coder", "password": "wrong-" + PASSWORD})
        site.client.get("/api/orders", headers=site.bearer(Role.MANAGER))
        site.client.get("/api/orders", headers={"Authorization": "Bearer lbi_forged-token"})
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    output = buffer.getvalue()
    cookies = [c.value for c in site.client.cookies.jar if c.value]
    for secret in [PASSWORD, settings.secret_key, *site.tokens.values(), *cookies]:
        assert secret not in output
    assert "lbi_forged-token" not in output


def test_hostile_text_in_coder_actions_is_stored_as_text_and_shown_inert(
    site: Site, engine: Engine
) -> None:
    detail = site.client.get(f"/api/orders/{site.order_id}", headers=site.bearer(Role.CODER))
    assert detail.status_code == 200
    version = detail.json()["row_version"]
    response = site.client.post(
        f"/api/orders/{site.order_id}/contacts",
        headers=site.bearer(Role.CODER),
        json={
            "row_version": version,
            "channel": "phone",
            "outcome": "answered",
            "answer": f"use E11.9 {SCRIPT} \x00\x07 '; DROP TABLE lab_order; --",
            "person": IMAGE,
        },
    )
    assert response.status_code < 500, response.text
    login(site.client, f"sec-{Role.CODER.value}")
    page = site.client.get(f"/orders/{site.order_id}").text
    for marker in HOSTILE_MARKERS:
        assert marker not in page
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lab_order")).scalar_one() >= 1
