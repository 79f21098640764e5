"""Verification against the database, on SQLite and PostgreSQL: batches, history, re-verify."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from verification_rows import store_order

from labintake.codes.catalog import CatalogEntry, TestCatalog
from labintake.codes.tables import CodeTables, load_code_tables
from labintake.config import Settings
from labintake.db import session_scope
from labintake.errors import WorkflowError
from labintake.models import (
    Finding,
    Order,
    OrderDiagnosis,
    OrderEvent,
    OrderTest,
    Verification,
)
from labintake.verification.service import pending_verifier, verify_order, verify_pending

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


def findings_of(engine: Engine, order_id: int, state: str = "open") -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(Finding)
            .where(Finding.order_id == order_id, Finding.state == state)
            .order_by(col(Finding.id))
        )
        return [(f.code, f.severity, f.location) for f in rows]


def status_of(engine: Engine, order_id: int) -> str:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.status


def test_pending_orders_become_verified_or_held_with_versions_findings_and_events(
    engine: Engine, tables: CodeTables
) -> None:
    clean = store_order(engine, [("80061", "CPT"), ("83036", "C4")], ["E78.5", "E11.9"])
    held = store_order(engine, [("84153", "CPT")], ["Z12.5"], mrn="MRN2")
    cancelled = store_order(engine, [("84443", "CPT")], [], status="cancelled", mrn="MRN3")
    assert verify_pending(engine, tables) == 2
    assert verify_pending(engine, tables) == 0
    assert status_of(engine, clean) == "verified"
    assert status_of(engine, held) == "held"
    assert status_of(engine, cancelled) == "cancelled"
    assert findings_of(engine, held) == [("SCREENING_ON_DIAGNOSTIC", "hold", "OBR[1]-4")]
    with Session(engine) as session:
        verification = session.exec(select(Verification).where(Verification.order_id == held)).one()
        assert verification.outcome == "held"
        assert verification.rules_version
        assert verification.table_versions["icd10cm"] == "icd10cm-2026-04"
        assert set(verification.table_versions) == {
            "icd10cm",
            "catalog",
            "coverage",
            "bundling",
            "dxedits",
        }
        finding = session.exec(select(Finding).where(Finding.order_id == held)).one()
        assert finding.verification_id == verification.id
        assert finding.clarify
        assert "G0103" in finding.message
        tests = session.exec(
            select(OrderTest).where(OrderTest.order_id == clean).order_by(col(OrderTest.seq))
        ).all()
        assert [(t.local_code, t.loinc, t.cpt) for t in tests] == [
            ("LIPID", "24331-1", "80061"),
            ("HBA1C", "4548-4", "83036"),
        ]
        event = session.exec(select(OrderEvent).where(OrderEvent.order_id == clean)).one()
        assert (event.action, event.detail["status_after"]) == ("verified", "verified")
        assert [t["necessity"] for t in event.detail["tests"]] == ["pass", "pass"]
        assert (
            session.exec(select(Verification).where(Verification.order_id == cancelled)).all() == []
        )


def test_history_follows_the_beneficiary_across_senders(engine: Engine, tables: CodeTables) -> None:
    """The same MBI sent by two practices under their own MRNs is one patient's history;
    the same MRN at another practice without an MBI is another patient."""
    mbi = ["1EG4TE5MK73^^^CMS^MC"]
    first = store_order(engine, [("85025", "CPT")], ["D64.9"], identifiers=mbi)
    second = store_order(
        engine, [("85025", "CPT")], ["D64.9"], facility="LAKEVIEW", mrn="LV-20", identifiers=mbi
    )
    stranger = store_order(engine, [("85025", "CPT")], ["D64.9"], facility="NORTHSIDE")
    verify_pending(engine, tables)
    assert findings_of(engine, first) == []
    assert findings_of(engine, second) == [("DUPLICATE_ORDER", "hold", "OBR[1]-4")]
    assert findings_of(engine, stranger) == []
    with Session(engine) as session:
        keys = {o.id: o.beneficiary_key for o in session.exec(select(Order))}
    assert keys[first] == keys[second] == "MBI|1EG4TE5MK73"
    assert keys[stranger] == "NORTHSIDE|MRN1"


def test_history_finds_duplicates_but_not_cancelled_orders(
    engine: Engine, tables: CodeTables
) -> None:
    first = store_order(engine, [("85025", "CPT")], ["D64.9"])
    store_order(engine, [("85025", "CPT")], ["D64.9"], status="cancelled")
    second = store_order(engine, [("85025", "CPT")], ["D64.9"])
    other_patient = store_order(engine, [("85025", "CPT")], ["D64.9"], mrn="MRN9")
    verify_pending(engine, tables)
    assert findings_of(engine, first) == []
    assert findings_of(engine, second) == [("DUPLICATE_ORDER", "hold", "OBR[1]-4")]
    assert findings_of(engine, other_patient) == []


def test_frequency_counts_stored_orders_on_earlier_dates(
    engine: Engine, tables: CodeTables
) -> None:
    store_order(engine, [("83036", "CPT")], ["E11.9"], dos=date(2026, 4, 1))
    verify_pending(engine, tables)
    again = store_order(engine, [("83036", "CPT")], ["E11.9"])
    verify_pending(engine, tables)
    # NCD 190.21's every-three-months figure is guidance for controlled diabetes: a warning
    assert findings_of(engine, again) == [("NECESSITY_FREQUENCY", "warn", "OBR[1]-4")]


def test_frequency_counts_only_orders_that_went_to_the_lab(
    engine: Engine, tables: CodeTables
) -> None:
    held = store_order(engine, [("G0103", "CPT")], ["Z12.5"], dos=date(2026, 1, 5), npi="")
    verify_pending(engine, tables)
    assert status_of(engine, held) == "held"
    again = store_order(engine, [("G0103", "CPT")], ["Z12.5"])
    verify_pending(engine, tables)
    assert findings_of(engine, again) == []
    store_order(engine, [("G0103", "CPT")], ["Z12.5"], dos=date(2026, 1, 6), mrn="MRN2")
    verify_pending(engine, tables)
    third = store_order(engine, [("G0103", "CPT")], ["Z12.5"], mrn="MRN2")
    verify_pending(engine, tables)
    assert findings_of(engine, third) == [("NECESSITY_FREQUENCY", "hold", "OBR[1]-4")]


def test_medicare_as_secondary_payer_applies_the_medicare_rules(
    engine: Engine, tables: CodeTables
) -> None:
    insurances = [
        {"plan_id": "PPO", "company_id": "60054", "company_name": "Blue Cross"},
        {"plan_id": "MCRB", "company_id": "CMS", "company_name": "Medicare Part B"},
    ]
    order_id = store_order(
        engine, [("84153", "CPT")], ["Z12.5"], payer="Blue Cross", insurances=insurances
    )
    verify_pending(engine, tables)
    assert findings_of(engine, order_id) == [("SCREENING_ON_DIAGNOSTIC", "hold", "OBR[1]-4")]
    alone = store_order(engine, [("84153", "CPT")], ["Z12.5"], payer="Blue Cross", mrn="M9")
    verify_pending(engine, tables)
    assert findings_of(engine, alone) == []


def test_reverify_after_correction_resolves_findings_and_keeps_overrides(
    engine: Engine, tables: CodeTables
) -> None:
    order_id = store_order(engine, [("83036", "CPT")], ["E11"], npi="1234567890")
    verify_pending(engine, tables)
    assert findings_of(engine, order_id) == [
        ("DX_NOT_BILLABLE", "hold", "DG1[1]-3"),
        ("PROVIDER_NPI_INVALID", "hold", "ORC[1]-12"),
    ]
    with session_scope(engine) as session:
        npi = session.exec(
            select(Finding).where(
                Finding.order_id == order_id, Finding.code == "PROVIDER_NPI_INVALID"
            )
        ).one()
        npi.state, npi.override_reason = "overridden", "office confirmed the NPI by phone"
        session.add(npi)
        dx = session.exec(select(OrderDiagnosis).where(OrderDiagnosis.order_id == order_id)).one()
        dx.active = False
        session.add(dx)
        session.add(
            OrderDiagnosis(
                order_id=order_id, seq=2, code="E11.65", location="DG1[1]-3", source="correction"
            )
        )
    with session_scope(engine) as session:
        result = verify_order(session, order_id, "coder1", tables)
    assert [f.code.value for f in result.findings] == ["PROVIDER_NPI_INVALID"]
    assert status_of(engine, order_id) == "verified"  # the remaining hold is overridden
    assert findings_of(engine, order_id, "resolved") == [("DX_NOT_BILLABLE", "hold", "DG1[1]-3")]
    assert findings_of(engine, order_id, "overridden") == [
        ("PROVIDER_NPI_INVALID", "hold", "ORC[1]-12")
    ]
    with Session(engine) as session:
        events = session.exec(
            select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(col(OrderEvent.id))
        ).all()
        assert [(e.actor, e.action) for e in events] == [
            ("verifier", "verified"),
            ("coder1", "re_verified"),
        ]
        assert events[1].detail["resolved"] == ["DX_NOT_BILLABLE@DG1[1]-3"]


def test_released_orders_cannot_be_verified_again(engine: Engine, tables: CodeTables) -> None:
    order_id = store_order(engine, [("85025", "CPT")], ["D64.9"], status="released")
    with session_scope(engine) as session, pytest.raises(WorkflowError, match="released"):
        verify_order(session, order_id, "coder1", tables)


def test_concurrent_batches_verify_each_order_once(engine: Engine, tables: CodeTables) -> None:
    ids = [store_order(engine, [("85025", "CPT")], ["D64.9"], mrn=f"M{i}") for i in range(40)]
    counts: list[int] = []
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            total = 0
            while True:
                done = verify_pending(engine, tables, limit=7)
                if not done:
                    break
                total += done
            counts.append(total)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(counts) == len(ids)
    with Session(engine) as session:
        per_order = session.exec(select(Verification.order_id)).all()
        assert sorted(per_order) == sorted(ids)


def test_worker_function_uses_the_rule_settings_file(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[interfaces.prairie-clinic.rules]\nDX_NOT_BILLABLE = "warn"\n')
    order_id = store_order(engine, [("83036", "CPT")], ["E11"])
    run = pending_verifier(settings.model_copy(update={"rules_file": rules}), engine)
    assert run(500) == 1
    assert run(500) == 0
    assert findings_of(engine, order_id) == [("DX_NOT_BILLABLE", "warn", "DG1[1]-3")]
    assert status_of(engine, order_id) == "verified"


class _BrokenCatalog(TestCatalog):
    """A catalog that fails on one code, standing in for a rule that breaks on an order."""

    def resolve(
        self, code: str, system: str, interface_codes: Mapping[str, str] | None = None
    ) -> CatalogEntry | None:
        if code == "BOOM":
            raise ValueError("catalog lookup broke")
        return super().resolve(code, system, interface_codes)


def test_an_order_the_rules_fail_on_goes_to_error_and_the_batch_goes_on(
    engine: Engine, tables: CodeTables
) -> None:
    broken = copy.copy(tables)
    broken.catalog = _BrokenCatalog(tables.catalog.version, list(tables.catalog))
    bad = store_order(engine, [("BOOM", "CPT")], ["E11.9"])
    good = store_order(engine, [("83036", "CPT")], ["E11.9"], mrn="MRN7")
    assert verify_pending(engine, broken) == 2
    assert verify_pending(engine, broken) == 0
    assert status_of(engine, good) == "verified"
    assert status_of(engine, bad) == "error"
    with Session(engine) as session:
        order = session.get(Order, bad)
        assert order is not None
        assert "catalog lookup broke" in (order.error or "")
        event = session.exec(select(OrderEvent).where(OrderEvent.order_id == bad)).one()
        assert event.action == "verification_failed"


def test_reverify_after_a_test_correction_uses_the_corrected_code(
    engine: Engine, tables: CodeTables
) -> None:
    order_id = store_order(engine, [("LAB2020", "")], ["E03.9"])
    with session_scope(engine) as session:  # the reader mapped the sender's code
        test = session.exec(select(OrderTest).where(OrderTest.order_id == order_id)).one()
        test.local_code = "LIPID"
        session.add(test)
    verify_pending(engine, tables)
    assert status_of(engine, order_id) == "verified"  # E03.9 supports lipids (190.23)
    with session_scope(engine) as session:  # what the queue does for a test correction
        test = session.exec(select(OrderTest).where(OrderTest.order_id == order_id)).one()
        test.sent_code, test.sent_system = "HBA1C", ""
        session.add(test)
        session.add(
            OrderEvent(
                order_id=order_id,
                actor="coder1",
                action="test_code_corrected",
                detail={"before": {"test_seq": 1}, "after": {"test_seq": 1, "code": "HBA1C"}},
            )
        )
    with session_scope(engine) as session:
        result = verify_order(session, order_id, "coder1", tables)
    assert result.tests[0].cpt == "83036"
    # E03.9 is on none of the (partial) 190.21 lists: the corrected test is checked, unverified
    assert [f.code.value for f in result.findings] == ["NECESSITY_UNVERIFIED"]
    with Session(engine) as session:
        test = session.exec(select(OrderTest).where(OrderTest.order_id == order_id)).one()
        assert (test.local_code, test.cpt) == ("HBA1C", "83036")


def test_history_reaches_back_to_the_start_of_a_once_in_a_lifetime_benefit(
    tables: CodeTables,
) -> None:
    from datetime import timedelta

    from labintake.verification.stored_history import history_window

    day = date(2026, 5, 12)
    window = history_window(tables, [day])
    assert day - timedelta(days=window) <= date(2014, 6, 2)  # hepatitis C, once in a lifetime
    assert window >= 61 * 30  # the 5-yearly cardiovascular screening
