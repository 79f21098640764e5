"""The JSON API: the screen's actions with the same rules and audit, for bearer tokens."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.orders import Order
from labintake.models.users import AuditEntry
from labintake.queue.service import Actor, ClarificationQueue
from labintake.web.app import create_app
from tests.factories import OrderSpec, held_order, make_token, make_user, orm_message


def _client(settings: Settings, engine: Engine, role: Role = Role.CODER) -> TestClient:
    make_user(engine, "api-user", role)
    token = make_token(engine, "api-user")
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_order_detail_has_what_the_contract_lists_and_the_view_is_audited(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    body = client.get(f"/api/orders/{order_id}").json()
    assert body["status"] == "held"
    assert body["control_id"] == "PFM900001"
    assert body["sending_application"] == "PRAXIS"
    assert body["placer_order_number"] == "PF9001"
    assert body["patient"]["family_name"] == "Lindqvist"
    assert body["ordering_provider"]["npi"] == "1987654328"
    assert body["ordering_provider"]["office"]["phone"] == "(515)555-0177"
    assert body["tests"][0]["sent"]["code"] == "83036"
    assert body["tests"][0]["resolved"]["cpt"] == "83036"
    assert body["diagnoses"][0]["code"] == "E11"
    assert body["findings"][0]["code"] == "DX_NOT_BILLABLE"
    assert body["code_table_versions"]["icd10cm"].startswith("icd10cm-")
    assert [h["action"] for h in body["history"]][:1] == ["received"]
    with Session(engine) as session:
        views = session.exec(select(AuditEntry).where(AuditEntry.action == "view_order")).all()
        assert [(v.actor, v.order_id, v.via) for v in views] == [("api-user", order_id, "api")]


def test_raw_message_is_returned_byte_for_byte(settings: Settings, engine: Engine) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    response = client.get(f"/api/orders/{order_id}/message")
    assert response.status_code == 200
    assert response.content == orm_message(OrderSpec())


def test_list_filters_by_status_placer_patient_and_pages_with_a_cursor(
    settings: Settings, engine: Engine
) -> None:
    ids = [
        held_order(engine, settings, OrderSpec(control_id=f"A{i}", placer=f"P{i}", mrn=f"M{i}"))
        for i in range(3)
    ]
    client = _client(settings, engine)
    page = client.get("/api/orders", params={"status": "held", "limit": 2}).json()
    assert [o["id"] for o in page["orders"]] == [ids[2], ids[1]]
    rest = client.get("/api/orders", params={"status": "held", "cursor": page["next_cursor"]})
    assert [o["id"] for o in rest.json()["orders"]] == [ids[0]]
    assert (
        client.get("/api/orders", params={"placer_order": "P1"}).json()["orders"][0]["id"] == ids[1]
    )
    assert (
        client.get("/api/orders", params={"control_id": "A2"}).json()["orders"][0]["id"] == ids[2]
    )
    assert client.get("/api/orders", params={"patient": "M0"}).json()["orders"][0]["id"] == ids[0]
    assert client.get("/api/orders", params={"status": "bogus"}).status_code == 409


def test_contact_correction_and_release_through_the_api(settings: Settings, engine: Engine) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    version = client.get(f"/api/orders/{order_id}").json()["row_version"]
    after_contact = client.post(
        f"/api/orders/{order_id}/contacts",
        json={
            "row_version": version,
            "channel": "phone",
            "outcome": "answered",
            "answer": "Type 2 diabetes without complications, per Dr Whitfield.",
        },
    ).json()
    contact_id = after_contact["contacts"][0]["id"]
    corrected = client.post(
        f"/api/orders/{order_id}/corrections",
        json={
            "row_version": after_contact["row_version"],
            "contact_id": contact_id,
            "new_code": "E11.9",
            "replaces": "E11",
        },
    )
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["status"] == "verified"
    released = client.post(
        f"/api/orders/{order_id}/release", json={"row_version": corrected.json()["row_version"]}
    )
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"


def test_a_stale_row_version_gets_409_with_the_current_version(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    version = client.get(f"/api/orders/{order_id}").json()["row_version"]
    first = client.post(
        f"/api/orders/{order_id}/reject", json={"row_version": version, "reason": "dup"}
    )
    assert first.status_code == 200
    second = client.post(
        f"/api/orders/{order_id}/reject", json={"row_version": version, "reason": "dup"}
    )
    assert second.status_code == 409
    assert second.json()["error"] == "ConcurrentChangeError"
    assert second.json()["current_row_version"] == version + 1


def test_rule_violations_map_to_409_and_bad_bodies_to_422(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    version = client.get(f"/api/orders/{order_id}").json()["row_version"]
    refused = client.post(f"/api/orders/{order_id}/release", json={"row_version": version})
    assert refused.status_code == 409
    assert "open hold findings" in refused.json()["detail"]
    assert client.post(f"/api/orders/{order_id}/release", json={}).status_code == 422
    assert client.get("/api/orders/999999").status_code == 404


def test_idempotency_key_makes_a_retried_post_safe(settings: Settings, engine: Engine) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    version = client.get(f"/api/orders/{order_id}").json()["row_version"]
    body = {"row_version": version, "channel": "fax", "outcome": "sent"}
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post(f"/api/orders/{order_id}/contacts", json=body, headers=headers)
    again = client.post(f"/api/orders/{order_id}/contacts", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert len(again.json()["contacts"]) == 1


def test_an_idempotency_key_reused_for_another_request_is_refused_with_422(
    settings: Settings, engine: Engine
) -> None:
    first_id = held_order(engine, settings)
    second_id = held_order(engine, settings, OrderSpec(control_id="PFM900002", placer="PF9002"))
    client = _client(settings, engine)
    version = client.get(f"/api/orders/{first_id}").json()["row_version"]
    body = {"row_version": version, "channel": "fax", "outcome": "sent"}
    headers = {"Idempotency-Key": "batch-7"}
    assert client.post(f"/api/orders/{first_id}/contacts", json=body, headers=headers).is_success
    other_version = client.get(f"/api/orders/{second_id}").json()["row_version"]
    reuses = {
        "another order": (second_id, "contacts", {**body, "row_version": other_version}),
        "another body": (first_id, "contacts", {**body, "channel": "phone"}),
        "another action": (first_id, "reject", {"row_version": version, "reason": "dup"}),
    }
    for what, (order_id, action, reused) in reuses.items():
        refused = client.post(f"/api/orders/{order_id}/{action}", json=reused, headers=headers)
        assert refused.status_code == 422, (what, refused.text)
        assert "another request" in refused.json()["detail"]
    assert client.get(f"/api/orders/{second_id}").json()["contacts"] == []
    assert client.get(f"/api/orders/{first_id}").json()["status"] == "awaiting_office"
    # The key belongs to its user: another user's same key is a different key.
    make_user(engine, "second-user", Role.CODER)
    other = TestClient(create_app(settings, engine))
    other.headers["Authorization"] = f"Bearer {make_token(engine, 'second-user')}"
    other_body = {**body, "row_version": other_version}
    assert other.post(
        f"/api/orders/{second_id}/contacts", json=other_body, headers=headers
    ).is_success


def test_a_failed_request_does_not_take_its_idempotency_key(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    version = client.get(f"/api/orders/{order_id}").json()["row_version"]
    headers = {"Idempotency-Key": "fix-and-retry"}
    stale = {"row_version": version + 5, "channel": "fax", "outcome": "sent"}
    assert (
        client.post(f"/api/orders/{order_id}/contacts", json=stale, headers=headers).status_code
        == 409
    )
    fixed = {**stale, "row_version": version}
    assert client.post(f"/api/orders/{order_id}/contacts", json=fixed, headers=headers).is_success


def test_icd10_lookup_by_code_and_by_words(settings: Settings, engine: Engine) -> None:
    client = _client(settings, engine)
    by_code = client.get("/api/icd10", params={"q": "E11.6"}).json()
    assert by_code["results"][0]["code"].startswith("E11.6")
    by_words = client.get("/api/icd10", params={"q": "type 2 diabetes"}).json()
    assert any(r["code"].startswith("E11") for r in by_words["results"])


def test_control_characters_in_typed_text_get_a_clear_409_not_a_database_error(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    client = _client(settings, engine)
    version = client.get(f"/api/orders/{order_id}").json()["row_version"]
    response = client.post(
        f"/api/orders/{order_id}/contacts",
        json={
            "row_version": version,
            "channel": "phone",
            "outcome": "answered",
            "answer": "a\x00b",
        },
    )
    assert response.status_code == 409
    assert "control characters" in response.json()["detail"]
    rejected = client.post(
        f"/api/orders/{order_id}/reject", json={"row_version": version, "reason": "x\x00"}
    )
    assert rejected.status_code == 409


def _bearer_client(settings: Settings, engine: Engine, name: str, role: Role) -> TestClient:
    make_user(engine, name, role)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {make_token(engine, name)}"
    return client


def test_a_coder_cannot_claim_contact_or_reject_an_order_another_coder_claimed(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    ann = _bearer_client(settings, engine, "ann", Role.CODER)
    ben = _bearer_client(settings, engine, "ben", Role.CODER)
    seen = ann.get(f"/api/orders/{order_id}").json()["row_version"]
    claim = {"row_version": seen, "assignee": "ann"}
    claimed = ann.post(f"/api/orders/{order_id}/assign", json=claim)
    assert claimed.status_code == 200
    version = claimed.json()["row_version"]
    attempts = {
        "assign": {"row_version": version, "assignee": "ben"},
        "contacts": {
            "row_version": version,
            "channel": "phone",
            "outcome": "answered",
            "answer": "E11.9",
        },
        "reject": {"row_version": version, "reason": "not ours"},
        "release": {"row_version": version, "override_reason": "looks fine"},
    }
    for action, body in attempts.items():
        refused = ben.post(f"/api/orders/{order_id}/{action}", json=body)
        assert refused.status_code == 403, (action, refused.text)
        assert "ann" in refused.json()["detail"]
    current = ann.get(f"/api/orders/{order_id}").json()
    assert (current["status"], current["assigned_to"], current["row_version"]) == (
        "held",
        "ann",
        version,
    )
    with Session(engine) as session:
        refusals = session.exec(
            select(AuditEntry).where(AuditEntry.action == "action_refused")
        ).all()
    assert [(r.actor, r.order_id, r.via) for r in refusals] == [("ben", order_id, "api")] * 4
    assert all(r.after["assigned_to"] == "ann" for r in refusals)
    # A manager may act on it, and the assignee herself.
    boss = _bearer_client(settings, engine, "boss", Role.MANAGER)
    reassigned = boss.post(
        f"/api/orders/{order_id}/assign", json={"row_version": version, "assignee": "ben"}
    )
    assert reassigned.status_code == 200
    assert reassigned.json()["assigned_to"] == "ben"
    contact = {
        "row_version": version + 1,
        "channel": "phone",
        "outcome": "answered",
        "answer": "E11.9",
    }
    assert ben.post(f"/api/orders/{order_id}/contacts", json=contact).status_code == 200


def test_order_detail_lists_its_office_queries_with_their_answer_by_date(
    settings: Settings, engine: Engine
) -> None:
    order_id = held_order(engine, settings)
    make_user(engine, "ann", Role.CODER)
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        ClarificationQueue(session, settings).create_query(
            Actor("ann", Role.CODER, "web"), order_id, order.row_version
        )
    body = _client(settings, engine).get(f"/api/orders/{order_id}")
    assert body.status_code == 200
    (query,) = body.json()["queries"]
    assert query["status"] == "open"
    assert query["respond_by"] > query["created_at"][:10]
    assert query["closed_at"] is None
    assert query["finding_codes"] == ["DX_NOT_BILLABLE"]
