"""Code tables out of date: an order dated where no loaded ICD-10-CM release applies is checked
against the newest release with a CODE_TABLES_OUT_OF_DATE finding, never silently; the finding
is the lab's, never a question for the office; /healthz, /metrics and the dashboard say so
while an order not yet released is affected; the log says so when the tables are loaded."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from verification_rows import store_order

from labintake.auth.roles import Role
from labintake.codes.tables import CodeTables, load_code_tables, log_icd10_status
from labintake.config import Settings
from labintake.db import session_scope
from labintake.models.orders import Finding, Order, OrderDiagnosis, OrderTest
from labintake.queue.office_query import compose_query
from labintake.statuses import FindingCode, Severity
from labintake.verification.engine import verify
from labintake.verification.facts import DiagnosisFacts, OrderFacts, TestFacts
from labintake.verification.rule_settings import RuleSettings
from labintake.verification.service import verify_pending
from labintake.web.app import create_app
from tests.factories import make_token, make_user

REPO = Path(__file__).resolve().parent.parent
FY2027 = date(2026, 11, 2)  # after the newest shipped release (FY2026, to 2026-09-30)
OUT = FindingCode.CODE_TABLES_OUT_OF_DATE


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


def _facts(dos: date, *dx: str) -> OrderFacts:
    return OrderFacts(
        tests=(TestFacts(1, "OBR[1]-4", "83036", "CPT"),),
        diagnoses=tuple(DiagnosisFacts(code, f"DG1[{i}]-3") for i, code in enumerate(dx, 1)),
        date_of_service=dos,
        provider_npi="1234567893",
        provider_name="Whitfield, Dana",
    )


def test_after_the_newest_window_the_newest_release_checks_with_a_warning(
    tables: CodeTables,
) -> None:
    result = verify(_facts(FY2027, "E11.A"), tables)
    (finding,) = [f for f in result.findings if f.code is OUT]
    assert finding.severity is Severity.WARN
    assert finding.location == "DG1-3"
    assert finding.clarify is None
    assert "icd10cm-2026-04 (2025-10-01 to 2026-09-30)" in finding.message
    assert "FY2027" in finding.message
    assert (
        "labintake codes import icd10cm icd10cm-order-2027.txt --effective-from 2026-10-01"
        in finding.message
    )
    assert dict(finding.reference) == {
        "checked_with": "icd10cm-2026-04",
        "window_from": "2025-10-01",
        "window_to": "2026-09-30",
        "why": "after",
    }
    assert result.table_versions["icd10cm"] == "icd10cm-2026-04"


def test_before_the_oldest_window_the_newest_release_checks_too(tables: CodeTables) -> None:
    result = verify(_facts(date(2024, 9, 30), "E11.9"), tables)
    (finding,) = [f for f in result.findings if f.code is OUT]
    assert finding.reference["why"] == "before"
    assert "before the oldest loaded release begins" in finding.message
    assert result.table_versions["icd10cm"] == "icd10cm-2026-04"


def test_inside_a_window_there_is_no_warning(tables: CodeTables) -> None:
    for day in (date(2024, 10, 1), date(2025, 9, 30), date(2025, 10, 1), date(2026, 9, 30)):
        assert OUT not in {f.code for f in verify(_facts(day, "E11.9"), tables).findings}


def test_an_order_without_diagnoses_checks_nothing_against_a_release(tables: CodeTables) -> None:
    assert {f.code for f in verify(_facts(FY2027), tables).findings} == {FindingCode.DX_MISSING}


def test_a_lab_may_hold_such_orders_by_a_setting(tables: CodeTables) -> None:
    rules = RuleSettings.from_mapping({"rules": {"CODE_TABLES_OUT_OF_DATE": "hold"}})
    result = verify(_facts(FY2027, "E11.9"), tables, rules=rules)
    assert [(f.code, f.severity) for f in result.findings] == [(OUT, Severity.HOLD)]
    assert result.status.value == "held"


def test_the_finding_never_becomes_a_question_for_the_office() -> None:
    order = Order(message_id=1, group_index=1)
    tests = [OrderTest(order_id=1, seq=1, sent_code="83036", sent_text="HbA1c")]
    dx = [OrderDiagnosis(order_id=1, seq=1, code="E11.9")]
    finding = Finding(order_id=1, verification_id=1, code=OUT.value, severity="hold", message="m")
    alone = compose_query(order, [finding], dx, tests)
    assert "code table" not in alone.question.lower()
    assert "release" not in alone.question.lower()
    other = Finding(
        order_id=1, verification_id=1, code="DX_NOT_BILLABLE", severity="hold", message="m"
    )
    both = compose_query(order, [finding, other], dx, tests)
    assert both.question == compose_query(order, [other], dx, tests).question


def _client(settings: Settings, engine: Engine) -> TestClient:
    make_user(engine, "manager_tables", Role.MANAGER)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {make_token(engine, 'manager_tables')}"
    return client


def test_healthz_metrics_and_dashboard_say_so_while_an_order_is_affected(
    settings: Settings, engine: Engine, tables: CodeTables
) -> None:
    client = _client(settings, engine)
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    stale = store_order(engine, [("83036", "CPT")], ["E11.9"], dos=FY2027, mrn="T1")
    fine = store_order(engine, [("83036", "CPT")], ["E11.9"], dos=date(2026, 5, 4), mrn="T2")
    verify_pending(engine, tables)
    with Session(engine) as session:
        codes = {
            order_id: {
                f.code for f in session.exec(select(Finding).where(Finding.order_id == order_id))
            }
            for order_id in (stale, fine)
        }
    assert OUT.value in codes[stale]
    assert OUT.value not in codes[fine]

    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "database": "ok",
        "code_tables": "out of date",
        "orders_out_of_date": 1,
    }
    assert "labintake_code_tables_out_of_date_orders 1.0" in client.get("/metrics").text
    page = client.get("/dashboard?refresh=1").text
    assert "Code tables out of date" in page
    assert "labintake codes import icd10cm" in page
    listed = client.get("/dashboard/orders?out_of_date=1").text
    assert f'<a href="/orders/{stale}">' in listed
    assert f'<a href="/orders/{fine}">' not in listed

    with session_scope(engine) as session:  # once the order is closed, nothing is affected
        order = session.get(Order, stale)
        assert order is not None
        order.status = "cancelled"
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    assert "labintake_code_tables_out_of_date_orders 0.0" in client.get("/metrics").text
    assert "Code tables out of date" not in client.get("/dashboard?refresh=1").text


def test_the_log_says_so_when_no_release_covers_today(
    tables: CodeTables, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="labintake.codes.tables"):
        assert log_icd10_status(tables, date(2026, 9, 30)) is None
        line = log_icd10_status(tables, date(2026, 12, 7))
    assert line is not None
    assert "newest loaded release icd10cm-2026-04 ends 2026-09-30" in line
    assert "--effective-from 2026-10-01" in line
    assert [r.getMessage() for r in caplog.records] == [line]


def test_the_coders_look_up_says_when_no_release_covers_the_date(
    settings: Settings, engine: Engine
) -> None:
    make_user(engine, "coder_tables", Role.CODER)
    client = TestClient(create_app(settings, engine))
    client.headers["Authorization"] = f"Bearer {make_token(engine, 'coder_tables')}"
    inside = client.get("/api/icd10", params={"q": "E11.A", "on": "2025-11-03"}).json()
    assert inside["release"] == "icd10cm-2026-04"
    assert "out_of_date" not in inside
    assert inside["results"][0]["code"] == "E11.A"
    after = client.get("/api/icd10", params={"q": "E11.A", "on": "2026-12-07"}).json()
    assert after["release"] == "icd10cm-2026-04"
    assert after["out_of_date"] == (
        "newest loaded; code tables out of date: no release covers 2026-12-07"
    )
    page = client.get("/icd10", params={"q": "E11.A", "on": "2026-12-07"}).text
    assert "code tables out of date" in page
