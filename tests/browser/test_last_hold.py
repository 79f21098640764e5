"""A correction that clears an order's last hold, in a real browser on SQLite and PostgreSQL:
the next order opens at once, the note says the corrected one goes to the lab by itself and
then when it was released; a coder may still release a verified order by hand, once."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.orders import Order
from labintake.models.release import OutboxEntry
from labintake.release.bulk import release_verified
from labintake.statuses import OrderStatus
from tests.browser.conftest import open_page, sign_in
from tests.factories import make_user, two_held_orders

pytestmark = pytest.mark.browser

POLL_WAIT = 10_000  # ms: the note asks every 2 s
ANSWER = "Dr Whitfield: type 2 diabetes without complications."


@pytest.fixture
def orders(settings: Settings, engine: Engine) -> list[int]:
    """Two held orders (Lindqvist first: E11, a header) and the coder Ann."""
    ids = two_held_orders(engine, settings)
    make_user(engine, "ann", Role.CODER)
    return ids


def _ann_fixes_the_first(chromium: Browser, live_url: str) -> tuple[Page, list[str]]:
    """Ann signs in and fixes the most urgent order (Lindqvist) by keyboard: the office's
    answer, then E11.9 for E11; the next order (Okafor) opens. Returns the page and the
    confirm dialogs it met."""
    dialogs: list[str] = []
    page = open_page(chromium, dialogs)
    sign_in(page, live_url, "ann")
    page.goto(f"{live_url}/queue")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Lindqvist, Marta")
    expect(page.locator("#record-contact textarea[name=answer]")).to_be_focused()
    page.keyboard.type(ANSWER)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#correct-diagnosis input[name=new_code]")).to_be_focused()
    page.keyboard.type("E11.9")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Okafor, Chidi")
    return page, dialogs


def _status(engine: Engine, order_id: int) -> str:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.status


def test_the_next_order_opens_and_the_note_follows_the_release(
    chromium: Browser, live_url: str, orders: list[int], engine: Engine
) -> None:
    first, _ = orders
    page, dialogs = _ann_fixes_the_first(chromium, live_url)

    # At once: the next order, with the corrected one told in words; no Release to press.
    note = page.locator("#released-meanwhile")
    expect(note).to_have_text(
        "All holds resolved: Lindqvist, Marta goes to the lab automatically. "
        "This is the next order in your queue."
    )
    expect(note).to_have_attribute("role", "status")
    answer = page.locator("#record-contact textarea[name=answer]")
    expect(answer).to_be_focused()  # the next thing to do is this order's
    assert dialogs == []
    assert _status(engine, first) == OrderStatus.VERIFIED

    # The release worker takes it: the note says when, focus stays where the coder is.
    page.keyboard.type("Front desk")
    assert release_verified(engine) == 1
    expect(note).to_contain_text(
        re.compile(
            r"All holds resolved: Lindqvist, Marta was released to the lab at "
            r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}\."
        ),
        timeout=POLL_WAIT,
    )
    # Final: the note stops asking (two polling periods pass without a request).
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.wait_for_timeout(4500)
    assert not [url for url in asked if "release-watch" in url], asked
    expect(answer).to_be_focused()
    expect(answer).to_have_value("Front desk")
    assert _status(engine, first) == OrderStatus.RELEASED


def test_a_verified_order_can_still_be_released_by_hand_once(
    chromium: Browser, live_url: str, orders: list[int], engine: Engine
) -> None:
    first, second = orders
    page, dialogs = _ann_fixes_the_first(chromium, live_url)

    # Back to the corrected order before the worker took it: it says it goes by itself,
    # focus is on the next order, Release is still there.
    page.click("#released-meanwhile a:has-text('Lindqvist, Marta')")
    expect(page.locator("h1")).to_contain_text("Lindqvist, Marta")
    expect(page.locator(".status")).to_have_text("verified")
    expect(page.locator("#released-meanwhile")).to_have_text(
        "All holds resolved: Lindqvist, Marta goes to the lab automatically. "
        "Nothing more to do here; Release would send it now."
    )
    expect(page.get_by_role("link", name="Next order (n)")).to_be_focused()
    release = page.get_by_role("button", name="Release (r)", exact=True)
    expect(release).to_be_visible()
    expect(release).not_to_be_focused()

    # Released by hand: done once, the next order opens, nothing left for the worker.
    release.click()
    expect(page.locator(".alert-ok").first).to_have_text(
        "Order released to the lab. This is the next order in your queue."
    )
    expect(page.locator("h1")).to_contain_text("Okafor, Chidi")
    assert dialogs == [f"Release order {first} to the lab?"]
    assert release_verified(engine) == 0
    assert _status(engine, first) == OrderStatus.RELEASED
    with Session(engine) as session:
        sent = session.exec(select(OutboxEntry).where(col(OutboxEntry.order_id) == first)).all()
        assert len(sent) == 1
    assert _status(engine, second) == OrderStatus.HELD


def test_release_pressed_after_the_worker_says_what_happened(
    chromium: Browser, live_url: str, orders: list[int], engine: Engine
) -> None:
    first, _ = orders
    page, _ = _ann_fixes_the_first(chromium, live_url)
    page.goto(f"{live_url}/orders/{first}")
    expect(page.locator(".status")).to_have_text("verified")

    assert release_verified(engine) == 1  # the worker, while the coder looks at the page
    page.get_by_role("button", name="Release (r)", exact=True).click()
    expect(page.locator("h1")).to_contain_text("Okafor, Chidi")
    expect(page.locator("#released-meanwhile")).to_contain_text(
        re.compile(r"All holds resolved: Lindqvist, Marta was released to the lab at \d{4}-")
    )
    expect(page.locator(".alert-stale")).to_have_count(0)
