"""The JSON API's OpenAPI document: true to the routes, served behind the API's sign-in, and
the copy in docs/ current."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.web.app import create_app
from labintake.web.openapi_copy import main, render
from tests.factories import held_order, make_token, make_user

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def test_the_committed_copy_is_what_the_code_gives() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is out of date: python -m labintake.web.openapi_copy docs/openapi.json"
    )


def test_the_check_command_says_when_the_copy_is_stale(tmp_path: Path) -> None:
    copy = tmp_path / "openapi.json"
    assert main([str(copy)]) == 0
    assert main(["--check", str(copy)]) == 0
    copy.write_text(copy.read_text(encoding="utf-8").replace("OrderDetail", "Order"))
    assert main(["--check", str(copy)]) == 1


def test_served_to_api_users_only_and_the_same_document(settings: Settings, engine: Engine) -> None:
    client = TestClient(create_app(settings, engine))
    refused = client.get("/api/openapi.json")
    assert refused.status_code == 401
    assert refused.json()["error"] == "NotAuthenticatedError"
    make_user(engine, "script", Role.CODER)
    client.headers["Authorization"] = f"Bearer {make_token(engine, 'script')}"
    served = client.get("/api/openapi.json")
    assert served.status_code == 200
    document = served.json()
    assert document == client.app.openapi()  # type: ignore[attr-defined]
    assert all(p.startswith(("/api/", "/healthz", "/metrics")) for p in document["paths"])
    assert "/api/openapi.json" not in document["paths"]


def test_every_json_answer_has_a_model_and_the_models_match_real_answers(
    settings: Settings, engine: Engine
) -> None:
    document = TestClient(create_app(settings, engine)).app.openapi()  # type: ignore[attr-defined]
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ok = operation["responses"].get("200") or operation["responses"]["201"]
            content = ok.get("content", {})
            if "application/json" in content:
                assert "$ref" in content["application/json"]["schema"], (method, path)
            if path.startswith("/api/"):
                assert {"401", "403"} <= set(operation["responses"]), (method, path)

    # The documented fields are the fields a real order gives, nested objects included.
    order_id = held_order(engine, settings)
    make_user(engine, "coder", Role.CODER)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {make_token(engine, 'coder')}"
    body = client.get(f"/api/orders/{order_id}").json()
    detail = schemas["OrderDetailWithNotes"]
    assert set(body) == set(detail["properties"])
    assert set(body["patient"]) == set(schemas["Patient"]["properties"])
    assert set(body["tests"][0]) == set(schemas["OrderTest"]["properties"])
    assert set(body["findings"][0]) == set(schemas["Finding"]["properties"])
    listed = client.get("/api/orders").json()
    assert set(listed["orders"][0]) == set(schemas["OrderSummary"]["properties"])
