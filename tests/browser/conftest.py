"""A live web app over each test database (SQLite and PostgreSQL), and headless Chromium."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.web.app import create_app
from tests.factories import PASSWORD

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def live_url(settings: Settings, engine: Engine) -> Iterator[str]:
    config = uvicorn.Config(
        create_app(settings, engine), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        yield launched
        launched.close()


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
