"""Replay: re-verify stored orders against other code-table versions; read-only unless applied."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner
from verification_rows import store_order

from labintake.cli import app
from labintake.codes.tables import CodeTables, load_code_tables
from labintake.models import Finding, Order, OrderEvent, Verification
from labintake.verification.replay import replay
from labintake.verification.service import verify_pending

REPO = Path(__file__).resolve().parent.parent
EARLY = date(2025, 6, 2)  # the April 2025 ICD-10-CM release is in force


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


@pytest.fixture(scope="module")
def tables_2026() -> CodeTables:
    return load_code_tables(REPO / "code_tables", only_version="icd10cm-2026-04")


def _counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        verifications = session.exec(select(func.count()).select_from(Verification)).one()
        events = session.exec(select(func.count()).select_from(OrderEvent)).one()
        return verifications, events


def _status(engine: Engine, order_id: int) -> str:
    with Session(engine) as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order.status


@pytest.fixture
def stored(engine: Engine, tables: CodeTables) -> dict[str, int]:
    ids = {
        "e11a": store_order(engine, [("83036", "CPT")], ["E11.A"], dos=EARLY, mrn="R1"),
        "e7801": store_order(engine, [("80061", "CPT")], ["E78.01"], dos=EARLY, mrn="R2"),
        "same": store_order(engine, [("84443", "CPT")], ["E03.9"], dos=EARLY, mrn="R3"),
        "old": store_order(engine, [("83036", "CPT")], ["E11.A"], dos=date(2025, 4, 2), mrn="R4"),
    }
    verify_pending(engine, tables)
    ids["released"] = store_order(
        engine, [("80061", "CPT")], ["E78.01"], dos=EARLY, mrn="R5", status="released"
    )
    assert _status(engine, ids["e11a"]) == "held"
    assert _status(engine, ids["e7801"]) == "verified"
    return ids


def test_replay_reports_changes_without_writing(
    engine: Engine, tables_2026: CodeTables, stored: dict[str, int]
) -> None:
    before = _counts(engine)
    report = replay(engine, tables_2026, date(2025, 5, 1))
    assert report.checked == 4  # the order before the date is left out
    changes = {c.order_id: c for c in report.changes}
    # pinned outside its window, the April 2026 release is never used silently
    assert set(changes) == {stored["e11a"], stored["e7801"], stored["same"], stored["released"]}
    assert report.out_of_date == 4
    e11a = changes[stored["e11a"]]
    assert (e11a.status_before, e11a.status_after) == ("held", "verified")
    assert e11a.removed == ["DX_NOT_EFFECTIVE@DG1[1]-3"]
    assert e11a.added == ["CODE_TABLES_OUT_OF_DATE@DG1-3"]
    assert changes[stored["same"]].added == ["CODE_TABLES_OUT_OF_DATE@DG1-3"]
    e7801 = changes[stored["e7801"]]
    assert (e7801.status_before, e7801.status_after, e7801.added) == (
        "verified",
        "held",
        ["DX_NOT_BILLABLE@DG1[1]-3", "CODE_TABLES_OUT_OF_DATE@DG1-3"],
    )
    assert e7801.table_versions["icd10cm"] == "icd10cm-2026-04"
    released = changes[stored["released"]]
    assert released.status_after == "released"
    assert "would now be held" in released.note
    assert not any(c.applied for c in report.changes)
    assert _counts(engine) == before
    assert _status(engine, stored["e11a"]) == "held"


def test_replay_against_the_tables_in_force_changes_nothing(
    engine: Engine, tables: CodeTables, stored: dict[str, int]
) -> None:
    report = replay(engine, tables, date(2025, 5, 1))
    assert report.checked == 4
    assert report.changes == []


def test_applied_replay_writes_verifications_status_and_events(
    engine: Engine, tables_2026: CodeTables, stored: dict[str, int]
) -> None:
    report = replay(engine, tables_2026, date(2025, 5, 1), apply=True)
    assert report.applied == 3  # "same" only gains the out-of-date warning
    assert _status(engine, stored["e11a"]) == "verified"
    assert _status(engine, stored["e7801"]) == "held"
    assert _status(engine, stored["released"]) == "released"
    with Session(engine) as session:
        event = session.exec(
            select(OrderEvent)
            .where(OrderEvent.order_id == stored["e11a"])
            .order_by(col(OrderEvent.id).desc())
        ).first()
        assert event is not None
        assert (event.actor, event.action) == ("replay", "replayed")
        assert event.detail["table_versions"]["icd10cm"] == "icd10cm-2026-04"
        resolved = session.exec(
            select(Finding).where(Finding.order_id == stored["e11a"], Finding.state == "resolved")
        ).one()
        assert resolved.code == "DX_NOT_EFFECTIVE"
    assert replay(engine, tables_2026, date(2025, 5, 1)).changes[0].order_id == stored["released"]


def test_replay_command_prints_each_change_and_a_summary(
    database_url: str, engine: Engine, stored: dict[str, int]
) -> None:
    env = {
        "LABINTAKE_DATABASE_URL": database_url,
        "LABINTAKE_DEVELOPMENT": "1",
        "LABINTAKE_CODE_TABLES_DIR": str(REPO / "code_tables"),
        "LABINTAKE_INTERFACES_DIR": str(REPO / "interfaces"),
    }
    result = CliRunner().invoke(
        app, ["replay", "--since", "2025-05-01", "--tables", "icd10cm-2026-04"], env=env
    )
    assert result.exit_code == 0, result.output
    assert f"order {stored['e11a']} " in result.output
    assert "held -> verified" in result.output
    assert "-DX_NOT_EFFECTIVE@DG1[1]-3" in result.output
    assert "4 order(s) since 2025-05-01" in result.output
    assert "read-only: nothing written" in result.output
    assert "4 of them have no ICD-10-CM release covering their date of service" in result.output
    unknown = CliRunner().invoke(
        app, ["replay", "--since", "2025-05-01", "--tables", "icd10cm-1999-01"], env=env
    )
    assert unknown.exit_code == 2
    assert "no table version" in unknown.output


FY2026_EARLY = date(2025, 11, 3)  # FY2026, before the April 2026 update's own date


@pytest.fixture(scope="module")
def april_to_march_tables(tmp_path_factory: pytest.TempPathFactory) -> CodeTables:
    """The shipped tables with the windows they used to have (each April release in force
    from its April 1 to the next March 31): the state before the fiscal-year windows."""
    folder = tmp_path_factory.mktemp("old-windows") / "code_tables"
    shutil.copytree(REPO / "code_tables", folder)
    for version, start, end in (
        ("icd10cm-2025-04", "2025-04-01", "effective_to = 2026-03-31\n"),
        ("icd10cm-2026-04", "2026-04-01", ""),
    ):
        path = folder / "icd10cm" / version / "manifest.toml"
        text = re.sub(r"effective_to = .*\n", "", path.read_text(encoding="utf-8"))
        text = re.sub(r"release_date = .*\n", "", text)
        text = re.sub(r"effective_from = .*\n", f"effective_from = {start}\n{end}", text)
        path.write_text(text, encoding="utf-8")
    return load_code_tables(folder)


def test_replay_after_the_fiscal_year_windows_fixes_october_to_march_orders(
    engine: Engine, april_to_march_tables: CodeTables, tables: CodeTables
) -> None:
    """Orders dated October 2025 to March 2026 verified under the old windows: E11.A (new in
    FY2026) was refused, E78.01 (a header since FY2026) accepted. Replayed against the shipped
    tables, E11.A is accepted and E78.01 refused as incomplete."""
    e11a = store_order(engine, [("83036", "CPT")], ["E11.A"], dos=FY2026_EARLY, mrn="U1")
    e7801 = store_order(engine, [("80061", "CPT")], ["E78.01"], dos=FY2026_EARLY, mrn="U2")
    g35 = store_order(engine, [("85025", "CPT")], ["G35"], dos=date(2026, 3, 31), mrn="U3")
    verify_pending(engine, april_to_march_tables)
    assert [_status(engine, i) for i in (e11a, e7801, g35)] == ["held", "verified", "verified"]
    report = replay(engine, tables, date(2025, 10, 1), apply=True)
    changes = {c.order_id: c for c in report.changes}
    assert report.out_of_date == 0
    assert (changes[e11a].status_after, changes[e11a].removed) == (
        "verified",
        ["DX_NOT_EFFECTIVE@DG1[1]-3"],
    )
    for order_id in (e7801, g35):
        assert (changes[order_id].status_after, changes[order_id].added) == (
            "held",
            ["DX_NOT_BILLABLE@DG1[1]-3"],
        )
        assert changes[order_id].table_versions["icd10cm"] == "icd10cm-2026-04"
    assert [_status(engine, i) for i in (e11a, e7801, g35)] == ["verified", "held", "held"]
