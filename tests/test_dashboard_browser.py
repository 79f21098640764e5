"""The dashboard in a real browser (Debian's chromium through Playwright); saves the
screenshot the docs show."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from factories_release import seed_busy_day
from playwright.sync_api import sync_playwright
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.web.app import create_app
from tests.factories import PASSWORD, make_user, screenshot_dir

pytestmark = pytest.mark.browser
SCREENSHOT = screenshot_dir() / "dashboard.png"  # docs/screenshots/ by `./dev screenshots`
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def live_url(settings: Settings, engine: Engine) -> Iterator[str]:
    config = uvicorn.Config(
        create_app(settings, engine), host="127.0.0.1", port=0, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("web server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_manager_sees_the_dashboard_and_follows_a_number_to_its_orders(
    live_url: str, engine: Engine, database_url: str
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    seed_busy_day(engine)
    make_user(engine, "maria", Role.MANAGER)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{live_url}/login?next=/dashboard")
            page.fill("input[name=username]", "maria")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{live_url}/dashboard")
            assert page.locator("h1").inner_text() == "Dashboard"
            assert "Current as of" in page.locator(".asof").first.inner_text()
            assert page.locator("svg.chart").count() >= 4
            held_tile = page.locator(".tile", has_text="On hold now").locator(".tile-value")
            assert int(held_tile.inner_text()) == 15
            if "postgresql" not in database_url:  # one screenshot is enough
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
            # Every number opens the rows behind it: the DX_MISSING bar lists 5 orders.
            page.locator("svg.chart a", has_text="DX_MISSING").first.click()
            page.wait_for_url("**/dashboard/orders?reason=DX_MISSING")
            assert page.locator("table.grid tbody tr").count() == 5
            # The refresh button recomputes and shows a new as-of time.
            page.goto(f"{live_url}/dashboard")
            page.click("text=Refresh now")
            page.wait_for_url("**/dashboard?window=24h&refresh=1")
            assert page.locator("h1").inner_text() == "Dashboard"
        finally:
            browser.close()
