"""The office query in a real browser (Debian's chromium, headless): written from the order
page, printed with the lab's letterhead and the patient's name as sent, not written twice,
answered by the contact that records the office's answer, closed when the order is rejected.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.accounts import set_phone
from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.db import make_engine, migrate
from labintake.models.users import User
from tests.browser.live import serve_web
from tests.factories import PASSWORD, OrderSpec, held_order, make_user

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int]]:
    url = f"sqlite:///{tmp_path / 'query.sqlite3'}"
    migrate(url)
    settings = Settings(
        development=True,
        database_url=url,
        interfaces_dir=REPO / "interfaces",
        code_tables_dir=REPO / "code_tables",
        lab_name="Prairie Reference Laboratory",
        lab_address="1200 Elm Street, Des Moines, IA 50309",
        lab_phone="(515) 555-0100",
        lab_fax="(515) 555-0199",
    )
    engine: Engine = make_engine(url)
    order_id = held_order(engine, settings, OrderSpec(family="Þórsdóttir", given="Guðrún"))
    held_order(engine, settings, OrderSpec(placer="PF9002", control_id="PFM900002"))
    make_user(engine, "ann", Role.CODER)
    with Session(engine) as session:
        ann = session.exec(select(User).where(User.username == "ann")).one()
        set_phone(session, ann, "(515) 555-0142", actor="admin")
        session.commit()
    with serve_web(settings, engine) as url:
        yield url, order_id
    engine.dispose()


def _signed_in(browser: Browser, base_url: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{base_url}/queue")
    page.fill("#username", "ann")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Clarification queue")
    return page


def test_a_query_is_written_once_printed_for_the_office_answered_and_closed(
    browser: Browser, served: tuple[str, int]
) -> None:
    base_url, order_id = served
    page = _signed_in(browser, base_url)
    order_url = f"{base_url}/orders/{order_id}"
    page.goto(order_url)
    queries = page.locator("li.query-row")

    # "w" writes the query (outside a text box: the page puts the focus on the office's
    # answer, the next thing to do); pressing it again shows the open one, not a second.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("w")
    expect(page.locator(".alert-ok")).to_contain_text("Query written")
    expect(queries).to_have_count(1)
    expect(queries.first).to_contain_text("open")
    expect(queries.first).to_contain_text("answer due")
    page.click("text=Write query (w)")
    expect(page.locator(".alert-ok")).to_contain_text("An open query already asks")
    expect(queries).to_have_count(1)

    # The printable page: letterhead, coder and direct line, the tests, questions, notice.
    href = queries.first.locator("a", has_text="printable page").get_attribute("href")
    assert href is not None
    printable = page.context.new_page()
    printable.goto(base_url + href)
    expect(printable.locator(".letterhead")).to_contain_text("Prairie Reference Laboratory")
    expect(printable.locator(".letterhead")).to_contain_text("Return fax (515) 555-0199")
    expect(printable.locator(".kv")).to_contain_text("Ann, coding · direct line (515) 555-0142")
    expect(printable.locator(".kv")).to_contain_text("Þórsdóttir, Guðrún")
    expect(printable.locator(".query-tests")).to_contain_text("HEMOGLOBIN A1C (as sent: 83036)")
    expect(printable.locator(".query-questions > li")).to_have_count(1)
    expect(printable.locator(".query-questions")).to_contain_text("with the reason given as E11")
    expect(printable.locator(".respond-by")).to_contain_text("Please answer by")
    expect(printable.locator(".notice")).to_contain_text("protected health information")
    violations = Axe().run(printable).response["violations"]
    assert [v["id"] for v in violations if v["impact"] in ("serious", "critical")] == []

    # The PDF says the same, with the name as sent.
    pdf = printable.request.get(base_url + href + "/pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(pdf.body()))
    text = " ".join(p.extract_text() for p in reader.pages)
    assert "Þórsdóttir, Guðrún" in text
    assert "Prairie Reference Laboratory" in text
    assert "direct line (515) 555-0142" in text
    printable.close()

    # The office's answer is recorded against the open query (chosen for the coder).
    query_id = href.rsplit("/", 1)[-1]
    expect(page.locator("select[name=query_id]")).to_have_value(query_id)
    page.select_option("select[name=channel]", "fax")
    page.select_option("select[name=outcome]", "answered")
    page.fill("textarea[name=answer]", "Type 2 diabetes without complications, per chart.")
    page.click("text=Save contact")
    expect(page.locator(".alert-ok")).to_have_text("Contact recorded.")
    expect(queries.first).to_contain_text("answered")
    expect(queries.first).to_contain_text("contacts #")

    # A new query after the answer; rejecting the order closes it.
    page.click("text=Write query (w)")
    expect(page.locator(".alert-ok")).to_contain_text("Query written")
    expect(queries).to_have_count(2)
    page.select_option("#reject-order select[name=category]", "Test not offered by this laboratory")
    page.click("button.danger")
    expect(page.locator(".alert-ok")).to_contain_text("Order rejected")
    page.goto(order_url)
    expect(queries.nth(0)).to_contain_text("answered")
    expect(queries.nth(1)).to_contain_text("closed: rejected")
