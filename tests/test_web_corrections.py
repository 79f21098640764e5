"""The order page's corrections: the code checked as typed, refusals beside the field, the
failing code chosen for replacement, a correction that clears the last hold (on to the next
order while the release worker sends it) and a release done meanwhile, told in words."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.orders import Order
from labintake.models.release import OutboxEntry
from labintake.queue.contacts import ContactChannel, ContactInput, ContactOutcome
from labintake.queue.service import Actor, ClarificationQueue
from labintake.release.bulk import release_verified
from labintake.web.app import create_app
from tests.factories import OrderSpec, held_order, make_user
from tests.web_client import login, row_version_of

ANSWER = ContactInput(
    ContactChannel.PHONE, ContactOutcome.ANSWERED, answer="Type 2, no complications"
)


def _ready(settings: Settings, engine: Engine, spec: OrderSpec | None = None) -> tuple[int, int]:
    """A held order (E11 sent for an HbA1c) with the office's answer recorded by ann."""
    order_id = held_order(engine, settings, spec)
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        queue = ClarificationQueue(session, settings)
        ann = Actor("ann", Role.CODER, "web")
        _, contact = queue.record_contact(ann, order_id, order.row_version, ANSWER)
        assert contact is not None
        assert contact.id is not None
        return order_id, contact.id


def _client(settings: Settings, engine: Engine) -> tuple[TestClient, str]:
    make_user(engine, "ann", Role.CODER)
    client = TestClient(create_app(settings, engine))
    return client, login(client, "ann")


def test_the_code_is_checked_as_it_is_typed(settings: Settings, engine: Engine) -> None:
    order_id, _ = _ready(settings, engine)
    client, _ = _client(settings, engine)
    url = f"/orders/{order_id}/diagnosis-check"
    bad = client.get(url, params={"new_code": "E11.999"}, headers={"HX-Request": "true"})
    assert bad.status_code == 200
    assert 'class="check-bad"' in bad.text
    assert "E11.999 is not a code of the ICD-10-CM release used for the date of service" in (
        bad.text
    )
    good = client.get(url, params={"new_code": "e11.9"}, headers={"HX-Request": "true"})
    assert 'class="check-ok"' in good.text
    assert "Type 2 diabetes mellitus without complications: valid and billable" in good.text


def test_a_refused_correction_is_shown_beside_its_field_and_the_failing_code_is_preselected(
    settings: Settings, engine: Engine
) -> None:
    order_id, contact_id = _ready(settings, engine)
    client, csrf = _client(settings, engine)
    page = client.get(f"/orders/{order_id}").text
    # "Replace" defaults to the code that failed, not to adding a diagnosis.
    replaces = re.search(r'<select name="replaces">(.*?)</select>', page, re.S)
    assert replaces is not None
    assert '<option value="E11" selected>E11 (held)</option>' in replaces.group(1)
    response = client.post(
        f"/orders/{order_id}/corrections",
        data={
            "row_version": str(row_version_of(page)),
            "csrf_token": csrf,
            "contact_id": str(contact_id),
            "kind": "diagnosis",
            "replaces": "E11",
            "new_code": "E11",
        },
        headers={"HX-Request": "true", "HX-Trigger": "correct-diagnosis"},
    )
    assert response.status_code == 409
    assert response.headers["HX-Retarget"] == '#correct-diagnosis [data-error-for="new_code"]'
    assert "is a heading, not a complete code" in response.text
    assert "Correction saved" not in client.get(f"/orders/{order_id}").text


def test_the_api_names_the_field_of_a_refused_correction(
    settings: Settings, engine: Engine
) -> None:
    order_id, contact_id = _ready(settings, engine)
    client, csrf = _client(settings, engine)
    version = row_version_of(client.get(f"/orders/{order_id}").text)
    response = client.post(
        f"/api/orders/{order_id}/corrections",
        json={
            "row_version": version,
            "contact_id": contact_id,
            "new_code": "E11.999",
            "replaces": "E11",
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 409
    assert response.json()["field"] == "new_code"


def _correct(client: TestClient, csrf: str, order_id: int, contact_id: int, code: str) -> str:
    """Replace E11 as the coder does on the page; returns where the page goes next."""
    page = client.get(f"/orders/{order_id}").text
    response = client.post(
        f"/orders/{order_id}/corrections",
        data={
            "row_version": str(row_version_of(page)),
            "csrf_token": csrf,
            "contact_id": str(contact_id),
            "replaces": "E11",
            "new_code": code,
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    return response.headers["HX-Redirect"]


def test_a_correction_that_clears_the_last_hold_opens_the_next_order_and_follows_the_release(
    settings: Settings, engine: Engine
) -> None:
    order_id, contact_id = _ready(settings, engine)
    following = held_order(
        engine, settings, OrderSpec(control_id="PFM900002", placer="PF9002", family="Okafor")
    )
    client, csrf = _client(settings, engine)
    target = _correct(client, csrf, order_id, contact_id, "E11.9")
    assert target == f"/orders/{following}?done=cleared&order={order_id}"
    shown = client.get(target).text
    assert "All holds resolved:" in shown
    assert "Lindqvist, Marta</a> goes to the lab automatically." in shown
    assert "This is the next order in your queue." in shown
    assert f'hx-get="/orders/{order_id}/release-watch"' in shown
    assert "Correction saved" not in shown  # said once, in the note

    watch = f"/orders/{order_id}/release-watch"
    waiting = client.get(watch, headers={"HX-Request": "true"})
    assert waiting.status_code == 200  # the note keeps polling
    assert "goes to the lab automatically" in waiting.text
    assert release_verified(engine) == 1  # the release worker takes it
    released = client.get(watch, headers={"HX-Request": "true"})
    assert released.status_code == 286  # HTMX stops polling
    assert "was released to the lab at <time datetime=" in released.text


def test_a_correction_that_leaves_a_hold_stays_on_the_order(
    settings: Settings, engine: Engine
) -> None:
    spec = OrderSpec(diagnoses=[("E11", "Diabetes"), ("E78", "Lipids")])
    order_id, contact_id = _ready(settings, engine, spec)
    client, csrf = _client(settings, engine)
    target = _correct(client, csrf, order_id, contact_id, "E11.9")
    assert target == f"/orders/{order_id}?done=corrected"
    shown = client.get(target).text
    assert "Correction saved and the order re-verified." in shown
    assert "goes to the lab automatically" not in shown


def test_a_verified_order_says_it_goes_to_the_lab_and_focus_is_not_on_release(
    settings: Settings, engine: Engine
) -> None:
    order_id, contact_id = _ready(settings, engine)
    client, csrf = _client(settings, engine)
    assert _correct(client, csrf, order_id, contact_id, "E11.9") == (
        f"/queue?done=cleared&order={order_id}"
    )
    assert (
        "goes to the lab automatically" in client.get(f"/queue?done=cleared&order={order_id}").text
    )
    page = client.get(f"/orders/{order_id}").text
    assert "goes to the lab automatically." in page
    assert "Nothing more to do here; <i>Release</i> would send it now." in page
    release = re.search(r'<button type="submit" class="primary" data-key="r"[^>]*>', page)
    assert release is not None  # Release is still there, for a coder who wants it now
    assert "data-autofocus" not in release.group(0)
    assert re.search(r'href="/queue" data-key="b" data-autofocus', page)


def test_releasing_by_hand_before_the_worker_releases_once(
    settings: Settings, engine: Engine
) -> None:
    order_id, contact_id = _ready(settings, engine)
    client, csrf = _client(settings, engine)
    _correct(client, csrf, order_id, contact_id, "E11.9")
    page = client.get(f"/orders/{order_id}").text
    response = client.post(
        f"/orders/{order_id}/release",
        data={"row_version": str(row_version_of(page)), "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert response.headers["HX-Redirect"] == "/queue?done=released"
    assert release_verified(engine) == 0  # nothing left for the worker
    with Session(engine) as session:
        entries = session.exec(select(OutboxEntry).where(OutboxEntry.order_id == order_id)).all()
        assert len(entries) == 1
    note = client.get(f"/orders/{order_id}/release-watch", headers={"HX-Request": "true"})
    assert note.status_code == 286
    assert "Already done: ann released" in note.text


def test_pressing_release_after_the_worker_released_says_what_happened(
    settings: Settings, engine: Engine
) -> None:
    order_id, contact_id = _ready(settings, engine)
    client, csrf = _client(settings, engine)
    _correct(client, csrf, order_id, contact_id, "E11.9")
    seen = client.get(f"/orders/{order_id}").text  # the coder went back to the order
    assert release_verified(engine) == 1
    response = client.post(
        f"/orders/{order_id}/release",
        data={"row_version": str(row_version_of(seen)), "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    target = response.headers["HX-Redirect"]
    assert target == f"/queue?done=already_released&order={order_id}"
    shown = client.get(target).text
    assert "All holds resolved:" in shown
    assert "was released to the lab at" in shown
    assert "Someone else changed this order" not in shown
    assert "release-watch" not in shown  # final: nothing to poll
