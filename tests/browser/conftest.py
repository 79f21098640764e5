"""A live web app over each test database (SQLite and PostgreSQL), and headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect
from sqlalchemy.engine import Engine

from labintake.config import Settings
from tests.browser.live import launch_chromium, serve_web
from tests.factories import PASSWORD


@pytest.fixture
def live_url(settings: Settings, engine: Engine) -> Iterator[str]:
    with serve_web(settings, engine) as url:
        yield url


@pytest.fixture
def chromium() -> Iterator[Browser]:
    with launch_chromium() as launched:
        yield launched


@pytest.fixture
def browser() -> Iterator[Browser]:
    with launch_chromium() as launched:
        yield launched


def open_page(browser: Browser, dialogs: list[str], width: int = 1280, height: int = 800) -> Page:
    """A page of its own (own cookies); dialogs are recorded, then accepted."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    return page


def sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login?next=/queue")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Clarification queue")
