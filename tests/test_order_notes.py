"""Internal notes on an order: added from the page or the API, audited, never a conflict."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.orders import Order
from labintake.models.users import AuditEntry
from labintake.web.app import create_app
from tests.factories import held_order, make_user
from tests.web_client import login, row_version_of


def test_a_note_is_shown_audited_and_leaves_the_row_version_alone(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    make_user(engine, "ann", Role.CODER)
    client = TestClient(create_app(settings, engine))
    csrf = login(client, "ann")
    before = row_version_of(client.get(f"/orders/{order_id}").text)
    saved = client.post(
        f"/orders/{order_id}/notes",
        data={"csrf_token": csrf, "text": "Office closed Fridays; call back Monday."},
        headers={"HX-Request": "true"},
    )
    assert saved.headers["HX-Redirect"] == f"/orders/{order_id}?done=noted#notes"
    page = client.get(f"/orders/{order_id}").text
    assert "Office closed Fridays; call back Monday." in page
    assert row_version_of(page) == before  # a note makes no one's open page stale
    empty = client.post(
        f"/orders/{order_id}/notes",
        data={"csrf_token": csrf, "text": "   "},
        headers={"HX-Request": "true", "HX-Trigger": "add-note"},
    )
    assert empty.status_code == 409
    assert empty.headers["HX-Retarget"] == '#add-note [data-error-for="text"]'
    api = client.post(
        f"/api/orders/{order_id}/notes",
        json={"text": "ABN on file per the office."},
        headers={"X-CSRF-Token": csrf},
    )
    assert api.status_code == 201
    detail = client.get(f"/api/orders/{order_id}").json()
    assert [n["text"] for n in detail["notes"]] == [
        "Office closed Fridays; call back Monday.",
        "ABN on file per the office.",
    ]
    with Session(engine) as session:
        actions = [a.action for a in session.exec(select(AuditEntry))]
        assert actions.count("note_added") == 2
        order = session.get(Order, order_id)
        assert order is not None
        assert order.row_version == before
