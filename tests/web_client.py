"""Helpers for driving the web app in tests: sign in through the real login form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.factories import PASSWORD

_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
_CSRF = re.compile(r'data-csrf="([^"]*)"')
_ROW_VERSION = re.compile(r'name="row_version" value="(\d+)"')


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in; returns the session's CSRF token (read from a page, as the browser does)."""
    page = client.get("/login")
    token = _LOGIN_TOKEN.search(page.text)
    assert token is not None
    response = client.post(
        "/login",
        data={"username": username, "password": password, "login_token": token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/queue").text)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None
    return found.group(1)


def row_version_of(html: str) -> int:
    found = _ROW_VERSION.search(html)
    assert found is not None
    return int(found.group(1))
