"""The app factory: health check, secure headers, static files."""

from __future__ import annotations

import subprocess
import sys

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


def test_the_service_does_not_load_the_pdf_library_until_a_pdf_is_asked_for() -> None:
    """About 30 MB of resident memory in every listener for a page few coders print."""
    probe = "import sys, labintake.runtime, labintake.web.app; print('fpdf' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
