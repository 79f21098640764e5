"""The app factory: health check, secure headers, static files."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.web.app import create_app


def test_healthz_reports_process_and_database_up_without_auth(
    settings: Settings, engine: Engine
) -> None:
    client = TestClient(create_app(settings, engine))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_every_response_carries_a_csp_without_inline_scripts(
    settings: Settings, engine: Engine
) -> None:
    client = TestClient(create_app(settings, engine))
    response = client.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_vendored_htmx_is_served_with_its_licence_note(settings: Settings, engine: Engine) -> None:
    client = TestClient(create_app(settings, engine))
    assert client.get("/static/htmx.min.js").text.startswith("var htmx=")
    assert "Zero-Clause BSD" in client.get("/static/htmx.LICENSE.txt").text
