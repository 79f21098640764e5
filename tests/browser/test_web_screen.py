"""The coder's screen in a real browser (Debian's chromium, headless): a day's work end to end.

The app runs in-process under uvicorn on a free port, over a migrated SQLite database seeded
through the real reader and verification. Screenshots of the queue and the order page go to
a scratch folder, or to `LABINTAKE_SCREENSHOTS_DIR` when set: `./dev screenshots` sets it to
docs/screenshots/ (shown by the docs), so a test run never rewrites tracked files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Dialog, Page, expect
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.db import make_engine, migrate
from tests.browser.live import serve_web
from tests.factories import PASSWORD, OrderSpec, held_order, make_user, screenshot_dir

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = screenshot_dir()

HOSTILE = OrderSpec(
    control_id="EVIL1",
    placer="EV0001",
    family="<script>alert(1)</script>",
    given="<img src=x onerror=alert(2)>",
    mrn="EVIL",
    note="<img src=x onerror=alert(3)>",
)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    url = f"sqlite:///{tmp_path / 'screen.sqlite3'}"
    migrate(url)
    settings = Settings(
        development=True,
        database_url=url,
        interfaces_dir=REPO / "interfaces",
        code_tables_dir=REPO / "code_tables",
    )
    engine = make_engine(url)
    held_order(engine, settings)  # Lindqvist, HbA1c with the header code E11
    people = [("Okafor", "Chidi"), ("Brennan", "Aoife"), ("Haddad", "Samir"), ("Kowalski", "Ewa")]
    for i, (family, given) in enumerate(people):
        held_order(
            engine,
            settings,
            OrderSpec(
                control_id=f"PFM9100{i}",
                placer=f"PF910{i}",
                family=family,
                given=given,
                mrn=f"PF3100{i}",
                diagnoses=[] if i % 2 else [("E11", "Diabetes")],
            ),
        )
    held_order(engine, settings, HOSTILE)
    make_user(engine, "ann", Role.CODER)
    make_user(engine, "ben", Role.CODER)
    yield settings, engine
    engine.dispose()


@pytest.fixture
def base_url(seeded: tuple[Settings, Engine]) -> Iterator[str]:
    settings, engine = seeded
    with serve_web(settings, engine) as url:
        yield url


def _page(browser: Browser, dialogs: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.on("dialog", on_dialog)
    return page


def _sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/queue")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Clarification queue")


def test_a_coder_works_a_held_order_from_queue_to_release_and_a_second_coder_is_refused(
    browser: Browser, base_url: str
) -> None:
    dialogs: list[str] = []
    ann = _page(browser, dialogs)
    _sign_in(ann, base_url, "ann")
    expect(ann.locator("tr.row")).to_have_count(6)
    expect(ann.locator(".counts a")).to_have_count(4)  # the counts load after the page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ann.screenshot(path=str(SCREENSHOTS / "queue.png"))

    # One search box, then the keyboard: j selects the first row, Enter opens it.
    ann.keyboard.press("/")
    ann.keyboard.type("PF9001")
    ann.keyboard.press("Enter")
    expect(ann.locator("tr.row")).to_have_count(1)
    ann.keyboard.press("j")
    ann.keyboard.press("Enter")
    expect(ann.locator("h1")).to_contain_text("Lindqvist, Marta")
    order_url = ann.url

    # A second coder opens the same order now, and will act on what is by then stale.
    ben = _page(browser, dialogs)
    _sign_in(ben, base_url, "ben")
    ben.goto(order_url)

    # Record the call: the office's answer in their words.
    ann.select_option("select[name=channel]", "phone")
    ann.select_option("select[name=outcome]", "answered")
    ann.fill("input[name=person]", "Pat at the front desk")
    ann.fill("textarea[name=answer]", "Dr Whitfield: type 2 diabetes without complications.")
    ann.click("text=Save contact")
    expect(ann.locator(".alert-ok")).to_have_text("Contact recorded.")
    expect(ann.locator("text=type 2 diabetes without complications.").first).to_be_visible()
    ann.screenshot(path=str(SCREENSHOTS / "order.png"), full_page=False)
    if os.environ.get("LABINTAKE_FULL_SCREENSHOTS"):
        ann.click("summary:has-text('Message as received')")
        ann.screenshot(path=os.environ["LABINTAKE_FULL_SCREENSHOTS"], full_page=True)

    # Correct the diagnosis citing that answer; the order is re-verified at once.
    ann.select_option("select[name=replaces]", "E11")
    ann.fill("input[name=new_code]", "E11.9")
    ann.click("text=Correct diagnosis and re-verify")
    expect(ann.locator("#released-meanwhile")).to_contain_text(
        "All holds resolved: Lindqvist, Marta goes to the lab automatically"
    )
    assert ann.url != order_url  # no hold left: the next order opens by itself

    # Back on it before the release worker takes it: Release still sends it at once,
    # confirmed once, then the next order opens by itself.
    ann.goto(order_url)
    expect(ann.locator(".status")).to_have_text("verified")
    ann.click("text=Release (r)")
    expect(ann.locator(".alert-ok")).to_contain_text("Order released to the lab")
    assert ann.url != order_url
    assert any(d.startswith("confirm: Release order") for d in dialogs)

    # The second coder's reject, made on the stale page, is refused with the fresh state.
    ben.select_option("#reject-order select[name=category]", "Duplicate of an earlier order")
    ben.fill("#reject-order textarea[name=reason]", "Same as PF8990 of the day before")
    ben.click("button.danger")
    expect(ben.locator(".alert-stale")).to_contain_text("Someone else changed this order")
    expect(ben.locator(".status")).to_have_text("released")
    assert not any(d.startswith("alert") for d in dialogs)


def test_hostile_text_in_a_message_renders_inert(browser: Browser, base_url: str) -> None:
    dialogs: list[str] = []
    page = _page(browser, dialogs)
    _sign_in(page, base_url, "ann")
    expect(page.locator("td a", has_text="<script>alert(1)</script>")).to_be_visible()
    page.click("td a >> text=<script>alert(1)</script>")
    expect(page.locator("h1")).to_contain_text("<script>alert(1)</script>")
    page.click("summary:has-text('Message as received')")
    expect(page.locator("td.value", has_text="<img src=x onerror=alert(3)>")).to_be_visible()
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0
    assert dialogs == []


def test_a_typed_code_is_checked_beside_the_field_and_a_refused_save_keeps_the_typing(
    browser: Browser, base_url: str
) -> None:
    dialogs: list[str] = []
    ann = _page(browser, dialogs)
    _sign_in(ann, base_url, "ann")
    ann.goto(f"{base_url}/queue?search=PF9001")
    ann.click("td a >> text=Lindqvist, Marta")
    order_url = ann.url
    ben = _page(browser, dialogs)
    _sign_in(ben, base_url, "ben")
    ben.goto(order_url)

    # Ann records the office's answer; the correction form opens with E11 (the held code).
    ann.select_option("#record-contact select[name=outcome]", "answered")
    ann.fill("#record-contact textarea[name=answer]", "Type 2 diabetes, no complications.")
    ann.click("text=Save contact")
    expect(ann.locator(".alert-ok")).to_have_text("Contact recorded.")
    expect(ann.locator("#correct-diagnosis select[name=replaces]")).to_have_value("E11")
    ann.fill("#correct-diagnosis input[name=new_code]", "E11.999")
    check = ann.locator("#correct-diagnosis-check")
    expect(check).to_contain_text("E11.999 is not a code of the ICD-10-CM release")
    ann.fill("#correct-diagnosis input[name=new_code]", "E11")
    expect(check).to_contain_text("is a heading, not a complete code")
    ann.click("text=Correct diagnosis and re-verify")  # refused, beside the field
    expect(check.locator("[role=alert]")).to_contain_text("is a heading")
    expect(ann.locator("#correct-diagnosis input[name=new_code]")).to_have_value("E11")

    # Ben had the order open from before: his save is refused, and what he typed is kept.
    ben.select_option("#record-contact select[name=outcome]", "answered")
    ben.fill("#record-contact textarea[name=answer]", "Nurse Kim: A1c for type 2 follow-up.")
    ben.click("text=Save contact")
    expect(ben.locator(".alert-stale")).to_contain_text("Someone else changed this order")
    expect(ben.locator("#record-contact textarea[name=answer]")).to_have_value(
        "Nurse Kim: A1c for type 2 follow-up."
    )
    expect(ben.locator("#record-contact .kept-draft")).to_contain_text("What you typed is kept")
    assert not any(d.startswith("alert") for d in dialogs)


SCREENS = (
    "/queue",
    "/queue?apply=1&col_dos=1&col_tests=1&col_payer=1&col_sender=1&col_assignee=1",
    "/orders/1",
    "/notices",
    "/messages/errors",
    "/dashboard",
    "/dashboard/outbox",
    "/dashboard/orders?status=held",
)


def test_every_screen_has_no_serious_or_critical_accessibility_violation(
    browser: Browser, base_url: str, seeded: tuple[Settings, Engine]
) -> None:
    _, engine = seeded
    make_user(engine, "maria", Role.MANAGER)  # managers see every screen
    axe = Axe()
    page = _page(browser, [])
    page.goto(f"{base_url}/login")
    found = {"/login": axe.run(page).response["violations"]}
    _sign_in(page, base_url, "maria")
    for path in SCREENS:
        page.goto(f"{base_url}{path}")
        page.wait_for_load_state("networkidle")
        found[path] = axe.run(page).response["violations"]
    serious = {
        path: [(v["id"], v["impact"], len(v["nodes"])) for v in violations]
        for path, violations in found.items()
        if any(v["impact"] in ("serious", "critical") for v in violations)
    }
    assert serious == {}


def test_at_1280x720_the_release_and_reject_panel_is_on_screen(
    browser: Browser, base_url: str
) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    _sign_in(page, base_url, "ann")
    page.goto(f"{base_url}/orders/1")
    for button in ("Release (r)", "Reject"):
        box = page.get_by_role("button", name=button, exact=True).bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= 720, f"{button} is below the fold at {box}"
