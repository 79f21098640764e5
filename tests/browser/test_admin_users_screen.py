"""The users screen in a real browser (Debian's chromium, headless), on each database: an
administrator adds a user, who signs in with a temporary password and must choose a new
one; the role is changed and the account deactivated; the last administrator cannot lock
themselves out. axe-core finds no serious or critical violation on these screens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Dialog, Page, expect
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.db import make_engine
from tests.browser.live import serve_web
from tests.factories import PASSWORD, make_user, screenshot_dir

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "my own new passphrase"


@pytest.fixture
def live(database_url: str) -> Iterator[tuple[str, Engine]]:
    """The app under uvicorn on a free port, over an empty migrated database with one admin."""
    settings = Settings(
        development=True,
        database_url=database_url,
        interfaces_dir=REPO / "interfaces",
        code_tables_dir=REPO / "code_tables",
    )
    engine = make_engine(database_url)
    make_user(engine, "ada", Role.ADMIN)
    with serve_web(settings, engine) as url:
        yield url, engine
    engine.dispose()


def _page(browser: Browser, dialogs: list[str]) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    return page


def _sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


def _serious(axe: Axe, page: Page) -> list[tuple[str, str, int]]:
    page.wait_for_load_state("networkidle")
    return [
        (v["id"], v["impact"], len(v["nodes"]))
        for v in axe.run(page).response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_an_admin_adds_a_user_changes_the_role_and_deactivates_the_account(
    browser: Browser, live: tuple[str, Engine]
) -> None:
    base_url, _ = live
    axe = Axe()
    found: dict[str, list[tuple[str, str, int]]] = {}
    dialogs: list[str] = []
    ada = _page(browser, dialogs)
    _sign_in(ada, base_url, "ada", PASSWORD)
    ada.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    expect(ada.locator("h1")).to_have_text("Users")
    found["users"] = _serious(axe, ada)

    # Add a user: a short password is refused beside the field, and the typing stays.
    form = ada.locator("#add-user")
    form.get_by_label("Username").fill("nell")
    form.get_by_label("Name shown on screens").fill("Nell Ortiz")
    form.get_by_label("Role").select_option("coder")
    form.get_by_label("Password", exact=True).fill("short")
    form.get_by_label("Password again").fill("short")
    form.get_by_role("button", name="Add user").click()
    expect(form.locator('[data-error-for="password"]')).to_have_text(
        "The password must have at least 10 characters."
    )
    expect(form.get_by_label("Username")).to_have_value("nell")
    form.get_by_label("Password", exact=True).fill(PASSWORD)
    form.get_by_label("Password again").fill(PASSWORD)
    form.get_by_role("button", name="Add user").click()
    expect(ada.locator("h1")).to_contain_text("Nell Ortiz")
    expect(ada.get_by_role("status").filter(has_text="User added.")).to_be_visible()
    found["user"] = _serious(axe, ada)
    user_url = ada.url

    # Change the role.
    role_form = ada.locator("#change-role")
    role_form.get_by_label("Role").select_option("manager")
    role_form.get_by_role("button", name="Change role").click()
    expect(
        ada.get_by_text("Role changed; the user's sessions and API tokens have ended.")
    ).to_be_visible()
    expect(ada.locator(".facts dd").first).to_have_text("manager")

    # A password typed here follows the policy, said beside the field; then a temporary
    # password, shown once: nell must choose her own at sign-in.
    reset = ada.locator("#reset-password")
    reset.get_by_label("One I type:").check()
    reset.get_by_label("Password", exact=True).fill("short")
    reset.get_by_label("Password again").fill("short")
    reset.get_by_role("button", name="Reset password").click()
    expect(reset.locator('[data-error-for="password"]')).to_have_text(
        "The password must have at least 10 characters."
    )
    reset.get_by_label("A temporary password", exact=False).check()
    reset.get_by_role("button", name="Reset password").click()
    temporary = ada.locator("#temporary-password")
    expect(temporary).to_be_visible()
    first_password = temporary.inner_text().strip()
    found["temporary password"] = _serious(axe, ada)
    screenshots = screenshot_dir()
    ada.screenshot(path=str(screenshots / "users.png"), full_page=True)

    nell = _page(browser, [])
    _sign_in(nell, base_url, "nell", first_password)
    expect(nell.locator("h1")).to_have_text("Your password")
    found["password page"] = _serious(axe, nell)
    nell.goto(f"{base_url}/dashboard")  # nothing else opens before the change
    expect(nell.locator("h1")).to_have_text("Your password")
    nell.get_by_label("Current password").fill(first_password)
    nell.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    nell.get_by_label("New password again").fill(NEW_PASSWORD + " typo")
    nell.get_by_role("button", name="Change password").click()
    expect(nell.locator('[data-error-for="new_password_repeat"]')).to_contain_text(
        "The two new passwords differ"
    )
    nell.get_by_label("New password again").fill(NEW_PASSWORD)
    nell.get_by_role("button", name="Change password").click()
    expect(nell.get_by_text("Your password is changed.")).to_be_visible()
    nell.get_by_role("link", name="Go to the queue").click()
    expect(nell.locator("h1")).to_have_text("Clarification queue")

    # Deactivate: asked first, then nell's session ends at once.
    ada.goto(user_url)
    ada.locator("#deactivate").get_by_role("button", name="Deactivate").click()
    expect(ada.get_by_text("Account deactivated;")).to_be_visible()
    assert dialogs == ["Deactivate nell? Their sessions and API tokens end at once."]
    nell.reload()
    expect(nell.locator("h1")).to_have_text("Sign in")
    ada.get_by_role("link", name="All users").click()
    expect(ada.locator("tr", has_text="nell")).to_contain_text("deactivated")

    # The only active admin cannot deactivate herself: said beside the button.
    ada.get_by_role("link", name="ada", exact=True).click()
    ada.locator("#deactivate").get_by_role("button", name="Deactivate").click()
    expect(ada.locator("#deactivate-note")).to_have_text(
        "There must be an active administrator and ada is the last one; make another user "
        "an administrator first."
    )
    found["refusal"] = _serious(axe, ada)
    assert {k: v for k, v in found.items() if v} == {}
