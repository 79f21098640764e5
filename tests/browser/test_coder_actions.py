"""How many actions a typical one-diagnosis fix takes, with the mouse and with the keyboard.

The fix: open the next held order, record the office's answer, replace the diagnosis. That
correction clears the order's last hold, so the release worker sends it to the lab by itself
and the next order opens at once: nothing is left to press (the test then runs the worker
and checks that both orders went to the lab). Typing the office's words (and the code they
gave) is not counted; everything else is: each mouse click (a confirm box's OK included: none
may appear) and each keystroke sequence (the keys pressed for one action with no typing
between: "Enter", "Ctrl+Enter"). Run with `-s` to see the figures; docs/queue.md records them.

Two orders are worked one after the other: the first is opened from the queue, the second
opens by itself when the first one's correction clears its last hold (auto-advance), as in a
working day. Every action needed to reach the next order is counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.orders import Order
from labintake.release.bulk import release_verified
from labintake.statuses import OrderStatus
from tests.browser.conftest import open_page, sign_in
from tests.factories import OrderSpec, held_order, make_user

pytestmark = pytest.mark.browser

TARGET_MOUSE = 6
TARGET_SEQUENCES = 3
CLEARED = re.compile(r"done=cleared")  # the next order, or the queue after the last one
ANSWER = "Dr Whitfield: type 2 diabetes without complications."


@dataclass
class Tally:
    """Mouse actions, keystroke sequences and key presses of one fix."""

    clicks: int = 0
    sequences: list[list[str]] = field(default_factory=list)
    typing: bool = True  # the next key press starts a new sequence

    @property
    def presses(self) -> int:
        return sum(len(s) for s in self.sequences)

    def key(self, page: Page, key: str) -> None:
        if self.typing:
            self.sequences.append([])
            self.typing = False
        self.sequences[-1].append(key)
        page.keyboard.press(key)

    def type(self, page: Page, text: str) -> None:
        page.keyboard.type(text)
        self.typing = True

    def click(self, page: Page, selector: str) -> None:
        self.clicks += 1
        page.click(selector)


def _seed(settings: Settings, engine: Engine) -> None:
    for i, (family, given) in enumerate([("Lindqvist", "Marta"), ("Okafor", "Chidi")]):
        held_order(
            engine,
            settings,
            OrderSpec(
                control_id=f"KB{i}", placer=f"KB{i}", family=family, given=given, mrn=f"KB{i}"
            ),
        )
    make_user(engine, "ann", Role.CODER)


def _cleared_and_next(page: Page, fixed: str, patient: str) -> None:
    """The next order is open; the note says the fixed one goes to the lab by itself."""
    note = page.locator("#released-meanwhile")
    expect(note).to_contain_text(f"All holds resolved: {fixed} goes to the lab automatically")
    expect(page.locator("h1")).to_contain_text(patient)


def _all_went_to_the_lab(engine: Engine) -> None:
    """Nothing was left for the coder to press: the release worker sends both orders."""
    assert release_verified(engine) == 2
    with Session(engine) as session:
        statuses = session.exec(select(Order.status)).all()
        assert statuses == [OrderStatus.RELEASED, OrderStatus.RELEASED]


def _by_mouse(page: Page, first: bool) -> Tally:
    tally = Tally()
    if first:
        tally.click(page, "table.queue tr.row >> nth=0 >> td a")
    expect(page.locator("#record-contact textarea[name=answer]")).to_be_focused()
    page.keyboard.type(ANSWER)  # the office's words: not counted
    tally.click(page, "text=Save contact")
    expect(page.locator(".alert-ok")).to_have_text("Contact recorded.")
    expect(page.locator("#correct-diagnosis input[name=new_code]")).to_be_focused()
    page.keyboard.type("E11.9")  # the code the office gave: not counted
    tally.click(page, "text=Correct diagnosis and re-verify")
    page.wait_for_url(CLEARED)
    return tally


def _by_keyboard(page: Page, first: bool) -> Tally:
    tally = Tally()
    if first:
        tally.key(page, "Enter")  # the queue as it opens: Enter opens the most urgent order
    expect(page.locator("#record-contact textarea[name=answer]")).to_be_focused()
    tally.type(page, ANSWER)
    tally.key(page, "Control+Enter")
    expect(page.locator(".alert-ok")).to_have_text("Contact recorded.")
    expect(page.locator("#correct-diagnosis input[name=new_code]")).to_be_focused()
    tally.type(page, "E11.9")
    tally.key(page, "Enter")
    page.wait_for_url(CLEARED)
    return tally


def _report(name: str, tallies: list[Tally]) -> None:
    for label, t in zip(("from the queue", "next by auto-advance"), tallies, strict=True):
        print(
            f"{name}, {label}: {t.clicks} mouse actions, {len(t.sequences)} keystroke "
            f"sequences ({t.presses} presses: {t.sequences})"
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_one_diagnosis_fix_by_mouse(
    chromium: Browser, live_url: str, settings: Settings, engine: Engine
) -> None:
    _seed(settings, engine)
    dialogs: list[str] = []  # a confirm box would be one more action: none may appear
    page = open_page(chromium, dialogs)
    sign_in(page, live_url, "ann")
    mouse = [_by_mouse(page, first=True)]
    _cleared_and_next(page, "Lindqvist, Marta", "Okafor, Chidi")
    mouse.append(_by_mouse(page, first=False))
    expect(page.locator("#released-meanwhile")).to_contain_text("Okafor, Chidi goes to the lab")
    assert dialogs == []
    assert all(m.clicks <= TARGET_MOUSE for m in mouse), mouse
    assert [m.sequences for m in mouse] == [[], []]
    _all_went_to_the_lab(engine)
    _report("mouse", mouse)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_one_diagnosis_fix_by_keyboard(
    chromium: Browser, live_url: str, settings: Settings, engine: Engine
) -> None:
    _seed(settings, engine)
    dialogs: list[str] = []
    page = open_page(chromium, dialogs)
    sign_in(page, live_url, "ann")
    page.goto(f"{live_url}/queue")
    keys = [_by_keyboard(page, first=True)]
    _cleared_and_next(page, "Lindqvist, Marta", "Okafor, Chidi")
    keys.append(_by_keyboard(page, first=False))
    expect(page.locator("#released-meanwhile")).to_contain_text("Okafor, Chidi goes to the lab")
    assert dialogs == []
    assert all(k.clicks == 0 for k in keys)
    # From the queue (opening the order included) and in a working run alike.
    assert all(len(k.sequences) <= TARGET_SEQUENCES for k in keys), keys
    _all_went_to_the_lab(engine)
    _report("keyboard", keys)
