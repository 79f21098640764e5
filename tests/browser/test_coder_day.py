"""The coder's day in a real browser, on SQLite and PostgreSQL: taking over a claim, the
history in sentences, the diagnosis table, the keyboard and a narrow screen, the attempt cap."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.orders import Order
from labintake.models.users import AuditEntry
from labintake.queue.contacts import (
    MAX_UNANSWERED_ATTEMPTS,
    ContactChannel,
    ContactInput,
    ContactOutcome,
)
from labintake.queue.service import Actor, ClarificationQueue
from tests.browser.conftest import open_page, sign_in
from tests.factories import make_user, two_held_orders

pytestmark = pytest.mark.browser


@pytest.fixture
def orders(settings: Settings, engine: Engine) -> list[int]:
    """Two held orders (Lindqvist first: E11, a header), and the coders Ann and Ben."""
    ids = two_held_orders(engine, settings)
    make_user(engine, "ann", Role.CODER)
    make_user(engine, "ben", Role.CODER)
    return ids


def test_taking_over_a_claim_asks_first_is_audited_and_the_first_coder_sees_it(
    chromium: Browser, live_url: str, orders: list[int], engine: Engine
) -> None:
    first, second = orders
    dialogs: list[str] = []
    ann = open_page(chromium, dialogs)
    sign_in(ann, live_url, "ann")
    ann.goto(f"{live_url}/orders/{first}")
    ann.click("#claim-order button")
    expect(ann.locator(".alert-ok")).to_have_text("You have claimed this order.")

    ben = open_page(chromium, dialogs)
    sign_in(ben, live_url, "ben")
    expect(ben.locator("tr.row", has_text="Lindqvist")).to_contain_text("held by ann")
    ben.goto(f"{live_url}/orders/{first}")
    expect(ben.locator("#claim-order")).to_contain_text("Held by Ann since")
    ben.click("#claim-order button")  # asks first, naming who holds it
    expect(ben.locator("#claim-order")).to_contain_text("Yours.")
    assert len(dialogs) == 1
    assert re.fullmatch(r"Held by Ann since \d\d:\d\d — take over\?", dialogs[0]), dialogs

    # Ann's page still shows the order as hers: her next action is refused, and she is told.
    ann.fill("#record-contact textarea[name=answer]", "Type 2, no complications.")
    ann.click("text=Save contact")
    expect(ann.locator("#taken-over")).to_contain_text("Taken over by Ben at")
    expect(ann.locator("#taken-over")).to_contain_text("nothing of yours was saved")
    expect(ann.locator("#record-contact textarea[name=answer]")).to_have_value(
        "Type 2, no complications."
    )
    ann.goto(f"{live_url}/orders/{first}?done=claimed")  # her old page, reloaded
    expect(ann.locator("text=You have claimed this order")).to_have_count(0)
    expect(ann.locator("#taken-over")).to_contain_text("Taken over by Ben at")
    with Session(engine) as session:
        audited = session.exec(
            select(AuditEntry).where(
                AuditEntry.order_id == first, AuditEntry.action == "taken_over"
            )
        ).one()
        assert (audited.actor, audited.before["assigned_to"]) == ("ben", "ann")

    # Ann ticks both orders: the one Ben holds is skipped, named, and offered for take-over.
    ann.goto(f"{live_url}/queue?apply=1")
    for order_id in (first, second):
        ann.check(f"input[aria-label='Select order {order_id}']")
    ann.click("text=Claim selected")
    expect(ann.locator("#claim-report")).to_have_text("Claimed 1 order. 1 skipped: see below.")
    skipped = ann.locator("#claim-skipped")
    expect(skipped).to_contain_text("1 held by another coder: Lindqvist, Marta (held by Ben since")
    # Only the held one ticked: never a green "Claimed 0 order(s)."
    ann.goto(f"{live_url}/queue?apply=1")
    ann.check(f"input[aria-label='Select order {first}']")
    ann.click("text=Claim selected")
    expect(ann.locator(".alert-ok")).to_have_count(0)
    expect(ann.locator("#claim-skipped")).to_contain_text("1 order not claimed")
    ann.click("#take-over button")
    expect(ann.locator("#claim-report")).to_have_text(
        "Claimed 1 order (1 taken over from another coder)."
    )
    with Session(engine) as session:
        order = session.get(Order, first)
        assert order is not None
        assert order.assigned_to == "ann"


def _fix_the_diagnosis(page: object) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.fill("#record-contact input[name=person]", "Pat at the front desk")
    page.fill("#record-contact textarea[name=answer]", "Type 2 diabetes, no complications.")
    page.click("text=Save contact")
    expect(page.locator(".alert-ok")).to_have_text("Contact recorded.")
    page.fill("#correct-diagnosis input[name=new_code]", "E11.9")
    page.click("text=Correct diagnosis and re-verify")
    # No hold left: the next order opens; the note leads back to the corrected one.
    note = page.locator("#released-meanwhile")
    expect(note).to_contain_text("All holds resolved: Lindqvist, Marta goes to the lab")
    note.locator("a", has_text="Lindqvist, Marta").click()
    expect(page.locator("h1")).to_contain_text("Lindqvist, Marta")


def test_the_history_reads_as_sentences_with_the_recorded_detail_kept(
    chromium: Browser, live_url: str, orders: list[int]
) -> None:
    page = open_page(chromium, [])
    sign_in(page, live_url, "ann")
    page.goto(f"{live_url}/orders/{orders[0]}")
    _fix_the_diagnosis(page)
    history = page.locator("table.history").first
    expect(history).to_contain_text(
        "Office answered by phone: “Type 2 diabetes, no complications.”"
    )
    expect(history).to_contain_text("E11 replaced by E11.9, citing the office's answer")
    expect(history).to_contain_text("Checked, held; found: Diagnosis not billable (E11).")
    expect(history).to_contain_text("Checked, verified, ready for release; resolved:")
    expect(history).to_contain_text("Received from the ordering system (message PFM900001).")
    sentences = " ".join(history.locator("span.event").all_inner_texts())
    assert "message_id" not in sentences
    assert "DX_NOT_BILLABLE@" not in sentences
    # The raw detail stays on hand: on hover, and in a details element.
    verified = history.locator("tr", has_text="found: Diagnosis not billable")
    assert "added: DX_NOT_BILLABLE@DG1[1]-3" in (
        verified.locator("span.event").get_attribute("title") or ""
    )
    verified.locator("summary", has_text="as recorded").click()
    expect(verified.locator("details.raw")).to_contain_text("added: DX_NOT_BILLABLE@DG1[1]-3")


def test_the_diagnosis_table_marks_the_failing_code_beside_its_official_title(
    chromium: Browser, live_url: str, orders: list[int]
) -> None:
    page = open_page(chromium, [])
    sign_in(page, live_url, "ann")
    page.goto(f"{live_url}/orders/{orders[0]}")
    table = page.locator("section[aria-labelledby=h-dx] table")
    expect(table.locator("th")).to_contain_text(
        ["Code", "Official ICD-10-CM title", "As the sender wrote it"]
    )
    failing = table.locator("tr.dx-failing")
    expect(failing).to_have_count(1)
    expect(failing.locator("td").nth(0)).to_have_text("held E11")
    expect(failing.locator("td").nth(1)).to_contain_text("Type 2 diabetes mellitus")
    expect(failing.locator("td").nth(1)).to_contain_text("Diagnosis not billable")
    expect(failing.locator("td").nth(2)).to_have_text("Diabetes")
    _fix_the_diagnosis(page)
    expect(table.locator("tr.dx-failing")).to_have_count(0)
    fixed = table.locator("tr", has_text="E11.9")
    expect(fixed.locator("td").nth(1)).to_contain_text(
        "Type 2 diabetes mellitus without complications"
    )


def test_skip_link_escape_focus_on_the_next_thing_and_the_queue_at_820_px(
    chromium: Browser, live_url: str, orders: list[int]
) -> None:
    dialogs: list[str] = []
    page = open_page(chromium, dialogs)
    sign_in(page, live_url, "ann")
    page.keyboard.press("Tab")  # the first stop on the page is the skip link
    expect(page.locator(":focus")).to_have_text("Skip to the main content")
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    # Esc closes the keyboard help, and a panel (focus back on its summary).
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.click("details.columns summary")
    expect(page.locator("details.columns")).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(page.locator("details.columns")).not_to_have_attribute("open", "")

    expect(page.locator("details.columns summary")).to_be_focused()

    # On the queue as it opens, Enter opens the most urgent order; focus is on the office's
    # answer, then on the replacement code; once no hold is left, the next order opens.
    page.goto(f"{live_url}/queue")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Lindqvist, Marta")
    expect(page.locator("#record-contact textarea[name=answer]")).to_be_focused()
    page.keyboard.type("Type 2 diabetes, no complications.")
    page.keyboard.press("Control+Enter")
    expect(page.locator(".alert-ok")).to_have_text("Contact recorded.")
    expect(page.locator("#correct-diagnosis input[name=new_code]")).to_be_focused()
    expect(page.locator("#correct-diagnosis select[name=replaces]")).to_have_value("E11")
    page.click("summary:has-text('Remove a diagnosis')")
    removal = page.locator("details.sub-action", has_text="Remove a diagnosis")
    expect(removal).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(removal).not_to_have_attribute("open", "")
    expect(page.locator("summary:has-text('Remove a diagnosis')")).to_be_focused()
    page.locator("#correct-diagnosis input[name=new_code]").focus()
    page.keyboard.type("E11.9")
    page.keyboard.press("Enter")
    expect(page.locator("#released-meanwhile")).to_contain_text("goes to the lab automatically")
    expect(page.locator("h1")).to_contain_text("Okafor, Chidi")
    expect(page.locator("#record-contact textarea[name=answer]")).to_be_focused()

    # The queue at 820 px: no sideways scrolling, even with every column switched on.
    narrow = open_page(chromium, [], width=820, height=900)
    sign_in(narrow, live_url, "ben")
    narrow.goto(
        f"{live_url}/queue?apply=1&col_dos=1&col_tests=1&col_payer=1&col_sender=1"
        "&col_office=1&col_assignee=1&col_attempts=1&col_age=1"
    )
    expect(narrow.locator("tr.row")).to_have_count(1)  # Lindqvist is verified now
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, f"the queue is {width} px wide at 820 px"
    expect(narrow.locator("table.queue td", has_text="Okafor, Chidi")).to_be_visible()
    expect(narrow.locator("table.queue th", has_text="Follow-up")).to_be_visible()


def test_the_attempt_count_never_goes_past_the_cap(
    chromium: Browser,
    live_url: str,
    orders: list[int],
    engine: Engine,
    settings: Settings,
) -> None:
    order_id = orders[0]
    page = open_page(chromium, [])
    sign_in(page, live_url, "ann")
    page.goto(f"{live_url}/orders/{order_id}")
    expect(page.locator("#attempt-count")).to_have_text("Attempt 1 of 4 if unanswered.")
    ann = Actor("ann", Role.CODER, "web")
    for _ in range(MAX_UNANSWERED_ATTEMPTS):
        with Session(engine) as session:
            order = session.get(Order, order_id)
            assert order is not None
            ClarificationQueue(session, settings).record_contact(
                ann,
                order_id,
                order.row_version,
                ContactInput(ContactChannel.PHONE, ContactOutcome.NO_ANSWER, "", "", None, None),
            )
    page.goto(f"{live_url}/orders/{order_id}")
    body = page.locator("main").inner_text()
    assert "Attempt 5 of 4" not in body
    assert "of 4 if unanswered" not in body
    expect(page.locator("#attempts-used")).to_have_text("· all 4 unanswered attempts used")
    expect(page.locator("#record-contact select[name=outcome] option")).to_have_text(["Answered"])
