"""The senders' sample messages under `interfaces/`, through intake, reading and verification:
each order ends with exactly the findings its sample was written to show, the others clean
(both backends). The samples are dated March 2024, before the first coverage table version (the
nearest version applies and is recorded) and before the oldest ICD-10-CM release (FY2025, from
2024-10-01): their diagnoses are checked against the newest release, and every order that has
diagnoses says so with a CODE_TABLES_OUT_OF_DATE warning."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.codes.tables import load_code_tables
from labintake.config import Settings
from labintake.intake import Intake
from labintake.interfaces import load_interfaces
from labintake.models import Finding, Order
from labintake.reading.worker import read_pending
from labintake.verification.service import verify_pending

REPO = Path(__file__).resolve().parent.parent

OUT_OF_DATE = ("CODE_TABLES_OUT_OF_DATE", "warn", "DG1-3")
# placer order number -> (status after verification, findings: code, severity, location)
EXPECTED: dict[str, tuple[str, set[tuple[str, str, str]]]] = {
    "NS1004": ("held", {("DX_NOT_BILLABLE", "hold", "DG1[1]-3"), OUT_OF_DATE}),
    "NS1005": ("held", {("DX_MISSING", "hold", "DG1-3")}),
    "LV5003": ("held", {("NECESSITY_NOT_SUPPORTED", "hold", "OBR[1]-4"), OUT_OF_DATE}),
    "PF3002": ("held", {("SCREENING_ON_DIAGNOSTIC", "hold", "OBR[1]-4"), OUT_OF_DATE}),
    "PF3004": ("held", {("PROVIDER_NPI_INVALID", "hold", "ORC[1]-12"), OUT_OF_DATE}),
}


def test_sample_messages_end_with_the_findings_they_were_written_for(
    settings: Settings, engine: Engine
) -> None:
    messages = [
        path.read_bytes()
        for folder in sorted((REPO / "interfaces").iterdir())
        for path in sorted((folder / "samples").glob("*.hl7"))
    ]

    async def go() -> None:
        async with Intake(settings, engine) as intake:
            for message in messages:
                await intake.handle(message, "192.0.2.8:5000")

    asyncio.run(go())
    registry = load_interfaces(settings.interfaces_dir)
    while read_pending(engine, registry):
        pass
    tables = load_code_tables(settings.code_tables_dir)
    while verify_pending(engine, tables, registry=registry):
        pass
    with Session(engine) as session:
        got = {}
        for order in session.exec(select(Order).order_by(col(Order.id))):
            findings = session.exec(select(Finding).where(Finding.order_id == order.id)).all()
            got[order.placer_order_number] = (
                order.status,
                {(f.code, f.severity, f.location) for f in findings},
            )
    for placer, expected in EXPECTED.items():
        assert got[placer] == expected, placer
    others = {placer: found for placer, found in got.items() if placer not in EXPECTED}
    assert others.pop("PF3003") == ("cancelled", set())  # cancelled before it was verified
    assert len(others) >= 8
    assert all(found == ("verified", {OUT_OF_DATE}) for found in others.values()), others
