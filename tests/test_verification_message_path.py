"""One message, one requisition, through the real path (SQLite and PostgreSQL):

MLLP intake function -> reading worker -> `verify_pending` -> findings in the database ->
release worker. The order groups of one message are verified together: an overlapping panel
in another group puts the finding on the test that should not be billed, whichever group it
is in; no order of a message is released while another of its orders waits to be verified.
The new diagnosis edits (sex, age, external cause, manifestation) are checked on the same path.
Patients and providers are synthetic.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.codes.tables import CodeTables, load_code_tables
from labintake.config import Settings
from labintake.db import session_scope
from labintake.intake import Intake
from labintake.interfaces import load_interfaces
from labintake.models import Finding, Order
from labintake.reading.worker import read_pending
from labintake.release.bulk import has_verified, release_verified
from labintake.statuses import OrderStatus
from labintake.verification.service import verify_order, verify_pending

REPO = Path(__file__).resolve().parent.parent
PROVIDER = "1049382710^Whitfield^Dana^^^^MD^^NPI"


def orm(control: str, groups: list[tuple[list[str], list[str]]], *, pid: str = "") -> bytes:
    """A prairie-clinic ORM^O01 with one ORC/OBR/DG1 group per (tests, diagnoses)."""
    day = "20260512"
    segments = [
        f"MSH|^~\\&|PRAXIS|PRAIRIEFM|LABINTAKE|REFLAB|{day}083000||ORM^O01|{control}|P|2.3.1",
        pid or f"PID|1||MR-{control}^^^PRAIRIEFM^MR||Testpatient^Robin||19550211|M",
        "IN1|1|MEDICARE|CMS|Medicare Part B",
    ]
    obr = 0
    for number, (tests, diagnoses) in enumerate(groups, start=1):
        placer = f"PL-{control}-{number}"
        segments.append(
            f"ORC|NW|{placer}|||||||{day}082500|||{PROVIDER}|||||||||Smith Family Medicine"
            "|88 Prairie Ave^^Ames^IA^50010|(515)555-0177"
        )
        for code in tests:
            obr += 1
            segments.append(f"OBR|{obr}|{placer}||{code}^^CPT|||{day}081500")
        for i, dx in enumerate(diagnoses, start=1):
            segments.append(f"DG1|{i}|I10|{dx}^^I10")
    segments.append("OBX|1|ST|SIGNATURE^Physician signature on file||Y")
    return ("\r".join(segments) + "\r").encode()


@pytest.fixture(scope="module")
def tables() -> CodeTables:
    return load_code_tables(REPO / "code_tables")


def _receive(settings: Settings, engine: Engine, messages: list[bytes]) -> None:
    async def go() -> list[bytes]:
        async with Intake(settings, engine) as intake:
            return [await intake.handle(m, "192.0.2.7:5000") for m in messages]

    acks = asyncio.run(go())
    assert all(b"MSA|AA|" in ack for ack in acks)
    registry = load_interfaces(settings.interfaces_dir)
    while read_pending(engine, registry):
        pass


def _orders(engine: Engine) -> dict[str, Order]:
    with Session(engine) as session:
        return {o.placer_order_number: o for o in session.exec(select(Order))}


def _findings(engine: Engine, order_id: int | None) -> set[tuple[str, str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(Finding).where(Finding.order_id == order_id)).all()
        return {(f.code, f.severity, f.location) for f in rows}


def test_a_smaller_panel_in_an_earlier_group_carries_the_bundling_finding(
    settings: Settings, engine: Engine, tables: CodeTables
) -> None:
    # BMP (inside CMP) in group 1, CMP in group 2; CMP + hepatic panel in a second message:
    # the finding goes on BMP and on the hepatic panel, never on the CMP.
    _receive(
        settings,
        engine,
        [
            orm("M1", [(["80048"], ["E87.6"]), (["80053"], ["E11.9"])]),
            orm("M2", [(["80053"], ["E11.9"]), (["80076"], ["K76.0"])]),
        ],
    )
    # a batch of one still takes the whole message
    assert verify_pending(engine, tables, limit=1) == 2
    assert verify_pending(engine, tables) == 2
    orders = _orders(engine)
    assert _findings(engine, orders["PL-M1-1"].id) == {("BUNDLED_COMPONENT", "hold", "OBR[1]-4")}
    assert _findings(engine, orders["PL-M1-2"].id) == set()
    assert _findings(engine, orders["PL-M2-1"].id) == set()
    assert _findings(engine, orders["PL-M2-2"].id) == {("BUNDLED_COMPONENT", "hold", "OBR[2]-4")}
    assert orders["PL-M1-1"].status == OrderStatus.HELD.value
    assert orders["PL-M1-2"].status == OrderStatus.VERIFIED.value
    with Session(engine) as session:
        message = session.exec(
            select(Finding).where(Finding.order_id == orders["PL-M1-1"].id)
        ).one()
        assert "in order group 2 of the same message (placer PL-M1-2" in message.message

    # re-verifying the held order alone still sees its sibling
    with session_scope(engine) as session:
        result = verify_order(session, orders["PL-M1-1"].id or 0, "coder1", tables)
    assert [f.code.value for f in result.findings] == ["BUNDLED_COMPONENT"]


def test_no_order_is_released_while_another_of_its_message_waits(
    settings: Settings, engine: Engine, tables: CodeTables
) -> None:
    _receive(settings, engine, [orm("M3", [(["84443"], ["E03.9"]), (["83036"], ["E11.9"])])])
    orders = _orders(engine)
    first, second = orders["PL-M3-1"].id, orders["PL-M3-2"].id
    # as if the first group had been verified on its own and the second not yet
    with session_scope(engine) as session:
        session.execute(
            update(Order).where(col(Order.id) == first).values(status=OrderStatus.VERIFIED.value)
        )
    assert not has_verified(engine)
    assert release_verified(engine) == 0
    assert verify_pending(engine, tables) == 1
    assert has_verified(engine)
    assert release_verified(engine) == 2
    statuses = {o.id: o.status for o in _orders(engine).values()}
    assert statuses[first] == statuses[second] == OrderStatus.RELEASED.value


def test_diagnosis_edits_on_the_real_path(
    settings: Settings, engine: Engine, tables: CodeTables
) -> None:
    # a 71-year-old man: a pregnancy code (sex warn + maternity age hold), an external cause
    # code alone, and a manifestation code alone; then the manifestation with its etiology
    _receive(
        settings,
        engine,
        [
            orm("D1", [(["82565"], ["O09.291"])]),
            orm("D2", [(["82565"], ["W19.XXXA"])]),
            orm("D3", [(["82565"], ["G63"])]),
            orm("D4", [(["82565"], ["E11.42", "G63"])]),
        ],
    )
    assert verify_pending(engine, tables) == 4
    orders = _orders(engine)
    assert _findings(engine, orders["PL-D1-1"].id) == {
        ("DX_SEX_CONFLICT", "warn", "DG1[1]-3"),
        ("DX_AGE_CONFLICT", "hold", "DG1[1]-3"),
    }
    assert _findings(engine, orders["PL-D2-1"].id) == {
        ("DX_EXTERNAL_CAUSE_ONLY", "hold", "DG1[1]-3")
    }
    assert _findings(engine, orders["PL-D3-1"].id) == {
        ("DX_MANIFESTATION_ALONE", "hold", "DG1[1]-3")
    }
    assert _findings(engine, orders["PL-D4-1"].id) == set()
    with Session(engine) as session:
        for row in session.exec(select(Finding).where(col(Finding.severity) == "hold")):
            assert row.clarify, row.code
            assert "pay" not in row.clarify.lower()
