"""A very large order is shown a page at a time: tests, diagnoses and the raw message are
bounded on the order page and in the JSON API."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from benchmarks.message_shapes import obrs_in_one_order
from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import InterfaceRegistry
from labintake.models import Order
from labintake.reading.worker import read_pending
from labintake.web.app import create_app
from tests.factories import make_token, make_user
from tests.test_reading import store
from tests.web_client import login

TESTS = 250


def large_order(engine: Engine) -> int:
    text = obrs_in_one_order(TESTS).replace("SHAPEEHR|SHAPECLINIC", "EHR|CLINIC")
    message_id = store(engine, text.encode(), "HUGE1")
    assert read_pending(engine, InterfaceRegistry(()), limits=ReadingLimits(tests_per_order=500))
    with Session(engine) as session:
        order = session.exec(select(Order).where(Order.message_id == message_id)).one()
        assert order.id is not None
        return order.id


def test_the_order_page_shows_a_hundred_tests_with_a_link_to_the_rest(
    settings: Settings, engine: Engine
) -> None:
    order_id = large_order(engine)
    make_user(engine, "ann", Role.CODER)
    client = TestClient(create_app(settings, engine))
    login(client, "ann")
    first = client.get(f"/orders/{order_id}").text
    assert "1–100 of 250" in first
    assert f'href="/orders/{order_id}?tests_offset=100#h-tests">more tests (150 left)' in first
    assert first.count('class="mono muted">OBR[') == 100
    last = client.get(f"/orders/{order_id}?tests_offset=200").text
    assert "201–250 of 250" in last
    assert "more tests" not in last
    assert f'href="/orders/{order_id}?tests_offset=100#h-tests">previous tests' in last
    assert "OBR[250]-4" in last
    # The message as received: the first 200 of its segments, and where the whole one is.
    assert "Shown: the first 200 of 254 segments" in first
    assert f'href="/api/orders/{order_id}/message"' in first


def test_the_api_pages_the_tests(settings: Settings, engine: Engine) -> None:
    order_id = large_order(engine)
    make_user(engine, "robot", Role.CODER)
    token = make_token(engine, "robot")
    client = TestClient(create_app(settings, engine))
    headers = {"Authorization": f"Bearer {token}"}
    body = client.get(f"/api/orders/{order_id}", headers=headers).json()
    assert (len(body["tests"]), body["tests_total"], body["tests_next_offset"]) == (100, 250, 100)
    assert body["tests"][0]["seq"] == 1
    rest = client.get(
        f"/api/orders/{order_id}?tests_offset=100&tests_limit=500", headers=headers
    ).json()
    assert [t["seq"] for t in rest["tests"]] == list(range(101, 251))
    assert rest["tests_next_offset"] is None
    assert client.get(f"/api/orders/{order_id}?tests_limit=501", headers=headers).status_code == 422
