"""The error queue for managers: messages that could not be read, and reprocessing them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.interfaces import load_interfaces
from labintake.models.messages import InboundMessage
from labintake.models.users import AuditEntry
from labintake.reading.worker import read_until_empty
from labintake.web.app import create_app
from tests.factories import make_token, make_user, store_message
from tests.web_client import login

NO_PATIENT_ID = (
    b"MSH|^~\\&|PRAXIS|PRAIRIEFM|LABINTAKE|REFLAB|20260315121500||ORM^O01|PFM990107|P|2.3.1\r"
    b'PID|1||""||Kowalski^Piotr||19580909|M\r'
    b"ORC|NW|PF9905|||||^^^20260315^^R||20260315121000|||1987654328^Whitfield^Dana^^^^MD^^NPI\r"
    b"OBR|1|PF9905||82947^GLUCOSE^CPT|||20260315120500\r"
    b"DG1|1|I10|R73.09^Other abnormal glucose^I10\r"
)


def _message_in_error(engine: Engine, settings: Settings) -> int:
    message_id = store_message(engine, NO_PATIENT_ID, "PFM990107")
    read_until_empty(engine, load_interfaces(settings.interfaces_dir))
    with Session(engine) as session:
        message = session.get(InboundMessage, message_id)
        assert message is not None
        assert message.status == "error"
    return message_id


def test_managers_see_the_error_queue_and_reprocess_is_audited(
    settings: Settings, engine: Engine
) -> None:
    message_id = _message_in_error(engine, settings)
    make_user(engine, "meg", Role.MANAGER)
    client = TestClient(create_app(settings, engine))
    csrf = login(client, "meg")
    page = client.get("/messages/errors").text
    assert "PFM990107" in page
    assert "PID-3" in page
    response = client.post(
        f"/messages/{message_id}/reprocess", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/messages/errors?done=error"  # still unreadable
    with Session(engine) as session:
        entry = session.exec(
            select(AuditEntry).where(AuditEntry.action == "reprocess_message")
        ).one()
        assert (entry.actor, entry.message_id, entry.after["status"]) == (
            "meg",
            message_id,
            "error",
        )


def test_error_queue_api_lists_and_reprocesses(settings: Settings, engine: Engine) -> None:
    message_id = _message_in_error(engine, settings)
    make_user(engine, "meg", Role.MANAGER)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {make_token(engine, 'meg')}"
    listed = client.get("/api/messages", params={"status": "error"}).json()["messages"]
    assert [(m["id"], m["control_id"]) for m in listed] == [(message_id, "PFM990107")]
    assert "PID-3" in listed[0]["error"]
    outcome = client.post(f"/api/messages/{message_id}/reprocess").json()
    assert outcome["status"] == "error"
    assert outcome["previous_error"] == listed[0]["error"]


def test_coders_cannot_open_the_error_queue(settings: Settings, engine: Engine) -> None:
    make_user(engine, "ann", Role.CODER)
    client = TestClient(create_app(settings, engine))
    login(client, "ann")
    assert client.get("/messages/errors").status_code == 403
