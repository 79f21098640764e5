"""Every finding code through the real path, on SQLite and PostgreSQL:

MLLP intake function (store, then AA) -> reading worker (messages into orders) ->
`verify_pending` -> findings in the database -> `GET /api/orders/{id}` as in the contract.
Messages come from the prairie-clinic sender (CPT codes in OBR-4, HL7 v2.3.1); patients
and providers are synthetic.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.auth.accounts import create_user
from labintake.auth.roles import Role
from labintake.auth.tokens import create_token
from labintake.codes.tables import CodeTables, load_code_tables
from labintake.config import Settings
from labintake.db import session_scope
from labintake.intake import Intake
from labintake.interfaces import load_interfaces
from labintake.models import Finding, Order
from labintake.reading.worker import read_pending
from labintake.verification.service import verify_pending
from labintake.web.app import create_app

REPO = Path(__file__).resolve().parent.parent
GOOD_PROVIDER = "1049382710^Whitfield^Dana^^^^MD^^NPI"


def orm(
    control: str,
    tests: list[str],
    dx: list[str],
    *,
    mrn: str | None = None,
    day: str = "20260512",
    provider: str = GOOD_PROVIDER,
    signature: str = "Y",
) -> bytes:
    """A prairie-clinic ORM^O01: one order group; tests as OBR-4 values, `code*units`."""
    placer = f"PL-{control}"
    segments = [
        f"MSH|^~\\&|PRAXIS|PRAIRIEFM|LABINTAKE|REFLAB|{day}083000||ORM^O01|{control}|P|2.3.1",
        f"PID|1||{mrn or 'MR-' + control}^^^PRAIRIEFM^MR||Testpatient^Robin||19550211|M",
        "IN1|1|MEDICARE|CMS|Medicare Part B",
        f"ORC|NW|{placer}|||||||{day}082500|||{provider}|||||||||Smith Family Medicine"
        "|88 Prairie Ave^^Ames^IA^50010|(515)555-0177",
    ]
    for i, spec in enumerate(tests, start=1):
        service, _, units = spec.partition("*")
        if "^" not in service:
            service = f"{service}^^CPT"
        segments.append(f"OBR|{i}|{placer}||{service}|||{day}081500" + "|" * 20 + (units or ""))
    for i, code in enumerate(dx, start=1):
        segments.append(f"DG1|{i}|I10|{code}^^I10")
    segments.append(f"OBX|1|ST|SIGNATURE^Physician signature on file||{signature}")
    return ("\r".join(segments) + "\r").encode()


# control id -> (message, the findings its order must show: code, severity, location)
SCENARIOS: dict[str, tuple[bytes, set[tuple[str, str, str]]]] = {
    "V01": (orm("V01", ["83036"], []), {("DX_MISSING", "hold", "DG1-3")}),
    "V02": (orm("V02", ["83036"], ["E11.99"]), {("DX_INVALID", "hold", "DG1[1]-3")}),
    "V03": (orm("V03", ["83036"], ["E11"]), {("DX_NOT_BILLABLE", "hold", "DG1[1]-3")}),
    "V04": (orm("V04", ["85025"], ["T78.1XXA"]), {("DX_NOT_EFFECTIVE", "hold", "DG1[1]-3")}),
    "V05": (orm("V05", ["83036"], ["E10.9", "E11.9"]), {("DX_EXCLUDES1", "warn", "DG1[2]-3")}),
    "V06": (
        orm("V06", ["84443"], ["Z00.00"]),
        {("NECESSITY_NOT_SUPPORTED", "hold", "OBR[1]-4")},
    ),
    "V07": (orm("V07", ["84153"], ["Z12.5"]), {("SCREENING_ON_DIAGNOSTIC", "hold", "OBR[1]-4")}),
    "V08": (orm("V08", ["86999^^CPT"], ["E11.9"]), {("TEST_UNKNOWN", "hold", "OBR[1]-4")}),
    "V09": (
        orm("V09", ["83036^HEMOGLOBIN A1C^CPT^3016-3^TSH^LN"], ["E11.9"]),
        {("TEST_CODE_MISMATCH", "hold", "OBR[1]-4")},
    ),
    "V10": (
        orm("V10", ["80053", "80048"], ["E11.9"]),
        {("BUNDLED_COMPONENT", "hold", "OBR[2]-4")},
    ),
    "V11": (orm("V11", ["85025*2"], ["D64.9"]), {("UNITS_OVER_LIMIT", "hold", "OBR[1]-4")}),
    "V12": (
        orm("V12", ["84443"], ["E03.9"], provider=""),
        {("PROVIDER_MISSING", "hold", "ORC-12")},
    ),
    "V13": (
        orm("V13", ["84443"], ["E03.9"], provider="1049382711^Whitfield^Dana^^^^MD^^NPI"),
        {("PROVIDER_NPI_INVALID", "hold", "ORC[1]-12")},
    ),
    "V14": (
        orm("V14", ["84443"], ["E03.9"], signature="N"),
        {("SIGNATURE_MISSING", "info", "ORC[1]-12")},
    ),
    # the same patient: an HbA1c in March, another in May (frequency), and a CBC twice in May
    "V15": (orm("V15", ["83036"], ["E11.9"], mrn="MR-HIST", day="20260320"), set()),
    "V16": (
        orm("V16", ["83036", "85027"], ["E11.9", "D64.9"], mrn="MR-HIST"),
        {("NECESSITY_FREQUENCY", "warn", "OBR[1]-4")},  # NCD 190.21 guidance: a warning
    ),
    "V17": (
        orm("V17", ["85027"], ["D64.9"], mrn="MR-HIST"),
        {("DUPLICATE_ORDER", "hold", "OBR[1]-4")},
    ),
    "V18": (orm("V18", ["80061", "83036"], ["E78.5", "E11.9"]), set()),
}


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


def _intake(settings: Settings, engine: Engine, messages: list[bytes]) -> list[bytes]:
    async def go() -> list[bytes]:
        async with Intake(settings, engine) as intake:
            return [await intake.handle(m, "192.0.2.7:5000") for m in messages]

    return asyncio.run(go())


def test_every_finding_code_from_intake_to_the_order_api(
    settings: Settings, engine: Engine, tables: CodeTables
) -> None:
    acks = _intake(settings, engine, [message for message, _ in SCENARIOS.values()])
    assert all(b"MSA|AA|" in ack for ack in acks)
    registry = load_interfaces(settings.interfaces_dir)
    while read_pending(engine, registry):
        pass
    verified = 0
    while done := verify_pending(engine, tables, registry=registry):
        verified += done
    assert verified == len(SCENARIOS)

    with Session(engine) as session:
        orders = {o.placer_order_number.removeprefix("PL-"): o for o in session.exec(select(Order))}
        for control, (_, expected) in SCENARIOS.items():
            order = orders[control]
            rows = session.exec(
                select(Finding).where(Finding.order_id == order.id).order_by(col(Finding.id))
            ).all()
            got = {(f.code, f.severity, f.location) for f in rows}
            assert got == expected, (control, [(f.code, f.location, f.message) for f in rows])
            holds = any(severity == "hold" for _, severity, _ in expected)
            assert order.status == ("held" if holds else "verified"), control

    with session_scope(engine) as session:
        create_user(session, "coder1", Role.CODER, "correct horse battery staple")
        token = create_token(session, "coder1")
    client = TestClient(create_app(settings, engine))
    headers = {"Authorization": f"Bearer {token}"}
    for control, (_, expected) in SCENARIOS.items():
        response = client.get(f"/api/orders/{orders[control].id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        shown = {(f["code"], f["severity"], f["location"]) for f in body["findings"]}
        assert shown == expected, control
        for finding in body["findings"]:
            assert finding["message"]
            assert finding["clarify"] or finding["severity"] != "hold"
        assert body["code_table_versions"]["icd10cm"].startswith("icd10cm-")
        assert body["rules_version"]
    clean = client.get(f"/api/orders/{orders['V18'].id}", headers=headers).json()
    assert [t["resolved"] for t in clean["tests"]] == [
        {"local_code": "LIPID", "loinc": "24331-1", "cpt": "80061"},
        {"local_code": "HBA1C", "loinc": "4548-4", "cpt": "83036"},
    ]
    assert clean["status"] == "verified"
