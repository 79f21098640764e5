"""The sign-in gate: throttled sign-ins answered 429 before the app, the rest untouched; the
throttle's refusals counted in aggregate with a bounded number of log lines."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.accounts import create_user
from labintake.auth.roles import Role
from labintake.auth.throttle import REPORTED_KEYS_PER_MINUTE, SignInThrottle
from labintake.config import Settings
from labintake.db import session_scope
from labintake.models.users import AuditEntry
from labintake.web import signin_gate
from labintake.web.app import create_app
from labintake.web.routes import login as login_route
from labintake.web.security import CONTENT_SECURITY_POLICY
from tests.factories import PASSWORD, make_user
from tests.web_client import login

WRONG = "not the password at all"
ODD_PASSWORD = "pässwörd + spaces & more=%20"  # what a form body must escape
_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"login_rate_per_address": "6/minute", "login_rate_per_account": "3/minute"}
    )


@pytest.fixture(autouse=True)
def no_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals answered at once (the hold has a test of its own)."""
    monkeypatch.setattr(signin_gate, "HOLD_SECONDS", 0.0)


@pytest.fixture
def forms_checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every login form token the route looked at: what the gate let through to the app."""
    checked: list[str] = []
    real = login_route._form_is_this_browsers

    def counting(request: object, login_token: str) -> bool:
        checked.append(login_token)
        return real(request, login_token)  # type: ignore[arg-type]

    monkeypatch.setattr(login_route, "_form_is_this_browsers", counting)
    return checked


def _form(client: TestClient, username: str, password: str = WRONG) -> dict[str, str]:
    token = _LOGIN_TOKEN.search(client.get("/login").text)
    assert token is not None
    return {"username": username, "password": password, "login_token": token.group(1)}


def _audit_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(AuditEntry.id)).all())


def test_an_address_over_its_limit_is_answered_429_by_the_gate_without_the_app(
    strict_settings: Settings, engine: Engine, forms_checked: list[str]
) -> None:
    make_user(engine, "ann")
    client = TestClient(create_app(strict_settings, engine))
    for i in range(6):
        response = client.post("/login", data=_form(client, f"nobody{i}"))
        assert response.status_code == 401
    assert len(forms_checked) == 6
    rows = _audit_rows(engine)
    # Even the right password, or a form no route would accept, is refused at the gate.
    for data in (_form(client, "ann", PASSWORD), {"username": "ann"}, {"junk": "x" * 5000}):
        refused = client.post("/login", data=data, follow_redirects=False)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "Too many sign-in attempts; try again in" in refused.text
        assert len(refused.content) < 600  # a short fixed page, no form, no signed token
        assert "set-cookie" not in refused.headers
        assert refused.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert refused.headers["cache-control"] == "no-store"
    assert len(forms_checked) == 6  # the route saw none of them
    assert _audit_rows(engine) == rows
    # Other pages, and the sign-in form itself, are not behind the gate.
    assert client.get("/login").status_code == 200


def test_an_account_over_its_limit_is_refused_at_the_gate_and_counted_for_the_address(
    strict_settings: Settings, engine: Engine, forms_checked: list[str]
) -> None:
    make_user(engine, "bo")
    first = TestClient(create_app(strict_settings, engine), client=("10.0.0.1", 5000))
    second = TestClient(create_app(strict_settings, engine), client=("10.0.0.2", 5000))
    throttle = first.app.state.sign_in_throttle  # type: ignore[attr-defined]
    second.app.state.sign_in_throttle = throttle  # type: ignore[attr-defined]
    statuses = [first.post("/login", data=_form(first, " BO ")).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    checked = len(forms_checked)
    # From another address, the account's window is full: 429 without reaching the route,
    # and the attempt counts against that address as the route would have counted it.
    assert [second.post("/login", data=_form(second, "bo")).status_code for _ in range(6)] == [
        429
    ] * 6
    assert len(forms_checked) == checked
    assert second.post("/login", data=_form(second, "someone")).status_code == 429
    assert len(forms_checked) == checked  # the address is full too now
    assert throttle.refused_total == 7


def test_a_sign_in_below_the_limits_passes_the_gate_with_its_form_unchanged(
    strict_settings: Settings, engine: Engine
) -> None:
    with session_scope(engine) as session:
        create_user(session, "cy", Role.CODER, ODD_PASSWORD)
    client = TestClient(create_app(strict_settings, engine))
    assert client.post("/login", data=_form(client, "cy")).status_code == 401
    login(client, "cy", ODD_PASSWORD)  # 303: the route read the form the gate peeked at
    assert client.get("/queue").status_code == 200


def test_refusals_are_logged_once_per_key_at_most_a_few_keys_a_minute_and_summarized(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = SignInThrottle("1/minute", "100/minute", summary_seconds=0.2)
    caplog.set_level(logging.WARNING, logger="labintake.auth")
    addresses = [f"10.9.0.{i}" for i in range(REPORTED_KEYS_PER_MINUTE + 5)]
    for address in addresses:
        throttle.admit(address, "dee")
        for _ in range(3):
            assert throttle.refusal(address) is not None
    assert throttle.refusal("10.9.9.9") is None  # a fresh address is not refused
    per_key = [r for r in caplog.records if getattr(r, "event", "") == "sign_in_throttled"]
    assert len(per_key) == REPORTED_KEYS_PER_MINUTE
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        summary = [
            r.getMessage()
            for r in caplog.records
            if getattr(r, "event", "") == "sign_in_throttled_summary"
        ]
        if summary:
            break
        time.sleep(0.05)
    assert summary == [
        f"{3 * len(addresses)} sign-in attempts refused over the rate limits in 0.2 s: "
        f"{3 * len(addresses)} from {len(addresses)} addresses (most from 10.9.0.0), "
        "0 for 0 accounts"
    ]
    assert throttle.refused_total == 3 * len(addresses)


def test_refusals_are_held_before_they_are_sent_but_only_so_many_at_once() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("a throttled sign-in reached the app")

    gate = signin_gate.SignInGateMiddleware(app, hold_seconds=0.3, max_held=2)
    throttle = SignInThrottle("1/minute", "10/minute")
    throttle.admit("10.8.0.1", "eve")
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/login",
        "client": ("10.8.0.1", 4000),
        "headers": [],
        "app": SimpleNamespace(state=SimpleNamespace(sign_in_throttle=throttle)),
    }

    async def refused_after() -> float:
        began = time.monotonic()
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            raise AssertionError("the body of a throttled address was read")

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await gate(scope, receive, send)  # type: ignore[arg-type]
        assert sent[0]["status"] == 429
        return time.monotonic() - began

    async def three_at_once() -> list[float]:
        return list(await asyncio.gather(*(refused_after() for _ in range(3))))

    waits = sorted(asyncio.run(three_at_once()))
    assert waits[0] < 0.2  # the third found two held already: answered at once
    assert waits[1] >= 0.3
    assert waits[2] >= 0.3
    assert gate._held == 0
