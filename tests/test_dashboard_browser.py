"""The dashboard in a real browser (Debian's chromium through Playwright); saves the
screenshot the docs show."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from factories_release import seed_busy_day
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from tests.browser.live import CHROMIUM, launch_chromium, serve_web
from tests.factories import PASSWORD, make_user, screenshot_dir

pytestmark = pytest.mark.browser
SCREENSHOT = screenshot_dir() / "dashboard.png"  # docs/screenshots/ by `./dev screenshots`


@pytest.fixture
def live_url(settings: Settings, engine: Engine) -> Iterator[str]:
    with serve_web(settings, engine) as url:
        yield url


def test_manager_sees_the_dashboard_and_follows_a_number_to_its_orders(
    live_url: str, engine: Engine, database_url: str
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    seed_busy_day(engine)
    make_user(engine, "maria", Role.MANAGER)
    with launch_chromium() as browser:
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
        page.locator("#range-figures", has_text="order(s) received").wait_for()
        if "postgresql" not in database_url:  # one screenshot is enough
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        # Every number opens the rows behind it: the DX_MISSING bar lists 5 orders.
        page.locator("svg.chart a", has_text="DX_MISSING").first.click()
        page.wait_for_url("**/dashboard/orders?reason=DX_MISSING")
        assert page.locator("table.grid tbody tr").count() == 5
        # The refresh button recomputes and shows a new as-of time.
        page.goto(f"{live_url}/dashboard")
        # the range section loads after the page: refresh once it is there, as a manager would
        page.locator("#range-figures", has_text="order(s) received").wait_for()
        with page.expect_navigation(url="**/dashboard?window=24h&refresh=1&start=*&end=*"):
            page.click("text=Refresh now")
        assert page.locator("h1").inner_text() == "Dashboard"


def test_a_date_range_applies_as_soon_as_a_date_changes(
    live_url: str, engine: Engine, database_url: str
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    from test_dashboard_turnaround import DAY, seed

    seed(engine)
    make_user(engine, "maria", Role.MANAGER)
    with launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{live_url}/login?next=/dashboard")
        page.fill("input[name=username]", "maria")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard")
        # The range section loads after the page: the last 7 days, nothing in them.
        page.locator("#range-figures", has_text="0 order(s) received").wait_for()
        # No submit button: changing the dates applies them (HTMX swaps the section in).
        assert page.locator(".range-controls button:visible").count() == 0
        page.fill("#range-start", (DAY - timedelta(days=1)).isoformat())
        page.fill("#range-end", DAY.isoformat())
        # Each change is its own request; the start alone already takes in the seeded day, so
        # wait for the second swap (it carries the end into the address) before reading.
        page.wait_for_url(re.compile(rf"[?&]end={DAY.isoformat()}(&|$)"))
        page.locator("#range-figures", has_text="7 order(s) received").wait_for()
        stages = page.locator("#range-figures table.grid").first
        row = stages.locator("tr", has_text="held → released").filter(has_text="held")
        assert "180 min" in row.first.inner_text() or "3.0 h" in row.first.inner_text()
        # The address keeps the range: a reload or a bookmark shows the same figures.
        assert f"start={(DAY - timedelta(days=1)).isoformat()}" in page.url
        assert f"end={DAY.isoformat()}" in page.url
        page.reload()
        page.locator("#range-figures", has_text="7 order(s) received").wait_for()
        assert page.locator("#range-start").input_value() == (DAY - timedelta(days=1)).isoformat()
        # Focus stayed on the date just changed (the form is not replaced).
        page.focus("#range-end")
        page.fill("#range-end", (DAY - timedelta(days=3)).isoformat())
        page.locator("#range-error").wait_for()
        assert "ends before it starts" in page.locator("#range-error").inner_text()
        assert page.evaluate("document.activeElement.id") == "range-end"
        # A number in the range opens the orders behind it.
        page.fill("#range-end", DAY.isoformat())
        page.locator("#range-figures", has_text="7 order(s) received").wait_for()
        # "Refresh now" keeps the range shown (its hidden fields follow each change).
        keep = page.locator("#range-keep input[name=start]")
        assert keep.get_attribute("value") == (DAY - timedelta(days=1)).isoformat()
        daily = page.locator("#range-figures table.grid").nth(1)
        daily.locator("tr", has_text=DAY.isoformat()).locator("a").first.click()
        page.wait_for_url("**/dashboard/orders?**")
        assert page.locator("table.grid tbody tr").count() == 6
