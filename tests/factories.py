"""Test data for the web screen and the queue: users, and held orders made the real way.

`held_order` stores an HL7 message as the intake would, then runs the real reader and the
real verification over it, so the order, its findings and the raw message are what the
product itself produces. All patients are synthetic.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from labintake.auth.accounts import create_user
from labintake.auth.roles import Role
from labintake.auth.tokens import create_token
from labintake.codes.tables import get_code_tables
from labintake.config import Settings
from labintake.db import session_scope
from labintake.interfaces import load_interfaces
from labintake.models.messages import InboundMessage
from labintake.models.orders import Order
from labintake.models.users import User
from labintake.reading.worker import read_until_empty
from labintake.statuses import MessageStatus
from labintake.verification.service import verify_pending

PASSWORD = "correct horse battery staple"


def make_user(engine: Engine, username: str, role: Role = Role.CODER) -> User:
    with session_scope(engine) as session:
        return create_user(session, username, role, PASSWORD, display_name=username.title())


def make_token(engine: Engine, username: str) -> str:
    with session_scope(engine) as session:
        return create_token(session, username)


@dataclass
class OrderSpec:
    """What goes into the ORM^O01 message (defaults: a Medicare HbA1c with a header code)."""

    control_id: str = "PFM900001"
    placer: str = "PF9001"
    family: str = "Lindqvist"
    given: str = "Marta"
    mrn: str = "PF20001"
    birth: str = "19580211"
    dos: str = "20260315"
    tests: list[tuple[str, str]] = field(default_factory=lambda: [("83036", "HEMOGLOBIN A1C")])
    diagnoses: list[tuple[str, str]] = field(default_factory=lambda: [("E11", "Diabetes")])
    office: str = "Smith \\T\\ Jones Family Medicine"
    office_phone: str = "(515)555-0177"
    note: str = ""
    priority: str = "R"  # ORC-7.6: S (STAT), A (ASAP), R (routine)


def orm_message(spec: OrderSpec) -> bytes:
    lines = [
        "MSH|^~\\&|PRAXIS|PRAIRIEFM|LABINTAKE|REFLAB|"
        f"{spec.dos}083000||ORM^O01|{spec.control_id}|P|2.3.1||||||UNICODE UTF-8",
        f"PID|1||{spec.mrn}^^^PRAIRIEFM^MR||{spec.family}^{spec.given}||{spec.birth}|F",
        "IN1|1|MEDICARE|CMS|Medicare Part B",
        f"ORC|NW|{spec.placer}|||||^^^{spec.dos}^^{spec.priority}||{spec.dos}082500|||"
        "1987654328^Whitfield^Dana^^^^MD^^NPI|||||||||"
        f"{spec.office}|88 Prairie Ave^^Ames^IA^50010|{spec.office_phone}|",
    ]
    for i, (code, text) in enumerate(spec.tests, start=1):
        lines.append(f"OBR|{i}|{spec.placer}||{code}^{text}^CPT|||{spec.dos}081500")
    if spec.note:
        lines.append(f"NTE|1||{spec.note}")
    for i, (code, text) in enumerate(spec.diagnoses, start=1):
        lines.append(f"DG1|{i}|I10|{code}^{text}^I10")
    lines.append("OBX|1|ST|SIGNATURE^Physician signature on file||Y")
    return "\r".join(lines).encode("utf-8") + b"\r"


def store_message(engine: Engine, raw: bytes, control_id: str) -> int:
    """Store a message as the intake does after its AA (status received, raw kept)."""
    with session_scope(engine) as session:
        message = InboundMessage(
            sending_application="PRAXIS",
            sending_facility="PRAIRIEFM",
            receiving_application="LABINTAKE",
            receiving_facility="REFLAB",
            control_id=control_id,
            message_type="ORM^O01",
            version="2.3.1",
            charset="UNICODE UTF-8",
            interface="prairie-clinic",
            raw=raw,
            ack_code="AA",
            ack=b"MSH|^~\\&|LABINTAKE|REFLAB|PRAXIS|PRAIRIEFM|||ACK|A1|P|2.3.1\rMSA|AA|"
            + control_id.encode()
            + b"\r",
            status=MessageStatus.RECEIVED.value,
            received_at=datetime.now(UTC),
        )
        session.add(message)
        session.flush()
        assert message.id is not None
        return message.id


def held_order(engine: Engine, settings: Settings, spec: OrderSpec | None = None) -> int:
    """Store, read and verify one message; returns the id of the order it produced."""
    spec = spec or OrderSpec()
    message_id = store_message(engine, orm_message(spec), spec.control_id)
    registry = load_interfaces(settings.interfaces_dir)
    read_until_empty(engine, registry)
    verify_pending(engine, get_code_tables(settings), registry=registry)
    with Session(engine) as session:
        order = session.exec(
            select(Order).where(Order.message_id == message_id).order_by(col(Order.id))
        ).first()
        assert order is not None, "the message produced no order"
        assert order.id is not None
        return order.id


def two_held_orders(engine: Engine, settings: Settings) -> list[int]:
    """Two held orders of the coder's day: Lindqvist first (E11, a header, the default
    spec), then Okafor."""
    return [
        held_order(engine, settings),
        held_order(
            engine,
            settings,
            OrderSpec(control_id="PFM90002", placer="PF9002", family="Okafor", given="Chidi"),
        ),
    ]


def screenshot_dir() -> Path:
    """Where browser tests write their screenshots: `LABINTAKE_SCREENSHOTS_DIR` (set to
    docs/screenshots/ by `./dev screenshots`), else a scratch folder, so that a test run never
    rewrites the tracked pictures."""
    given = os.environ.get("LABINTAKE_SCREENSHOTS_DIR")
    folder = Path(given) if given else Path(tempfile.gettempdir()) / "labintake-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
