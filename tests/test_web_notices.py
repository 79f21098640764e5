"""Notices the jobs write, on a screen: coders see theirs, managers all; marking done is
audited and happens once."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.models.release import Notification
from labintake.models.users import AuditEntry
from labintake.web.app import create_app
from tests.factories import make_user
from tests.web_client import login


def _notices(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        follow_up = Notification(
            kind="follow_up_due",
            recipient_role="coder",
            text="Order 7: follow-up with Smith Family Medicine due today",
            dedupe_key="f7",
        )
        escalation = Notification(
            kind="escalation",
            recipient_role="manager",
            text="Order 9 held for 80 hours",
            dedupe_key="e9",
        )
        session.add_all([follow_up, escalation])
        session.commit()
        assert follow_up.id is not None
        assert escalation.id is not None
        return follow_up.id, escalation.id


def _signed_in(settings: Settings, engine: Engine, name: str, role: Role) -> tuple[TestClient, str]:
    make_user(engine, name, role)
    client = TestClient(create_app(settings, engine))
    return client, login(client, name)


def test_a_coder_sees_the_coders_notices_and_marks_one_done_once(
    settings: Settings, engine: Engine
) -> None:
    follow_up, escalation = _notices(engine)
    client, csrf = _signed_in(settings, engine, "ann", Role.CODER)
    page = client.get("/notices").text
    assert "Follow-up due" in page
    assert "follow-up with Smith Family Medicine due today" in page
    assert "Order 9 held for 80 hours" not in page
    forbidden = client.post(f"/notices/{escalation}/done", data={"csrf_token": csrf})
    assert forbidden.status_code == 403
    done = client.post(
        f"/notices/{follow_up}/done", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/notices?marked=1"
    again = client.post(f"/notices/{follow_up}/done", data={"csrf_token": csrf})
    assert again.status_code == 200
    assert "No open notices." in client.get("/notices").text
    assert re.search(r"follow-up with Smith Family Medicine", client.get("/notices?show=done").text)
    with Session(engine) as session:
        entries = session.exec(select(AuditEntry).where(AuditEntry.action == "notice_done")).all()
        assert [(e.actor, e.after) for e in entries] == [
            ("ann", {"notice": follow_up, "kind": "follow_up_due"})
        ]


def test_a_manager_sees_every_notice(settings: Settings, engine: Engine) -> None:
    _notices(engine)
    client, _ = _signed_in(settings, engine, "maria", Role.MANAGER)
    page = client.get("/notices").text
    assert "Hold escalated" in page
    assert "Follow-up due" in page
