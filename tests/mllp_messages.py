"""Synthetic HL7 messages for the intake tests (made-up patients and providers only)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_segments
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from labintake.config import Settings
from labintake.db import make_engine
from labintake.intake import Intake
from labintake.intake.journal import journal_path
from labintake.interfaces import InterfaceRegistry
from labintake.mllp.server import MLLPServer


def orm(
    control_id: str = "CTRL0001",
    *,
    sending_application: str = "EPIC",
    sending_facility: str = "NORTHSIDE",
    message_type: str = "ORM^O01^ORM_O01",
    version: str = "2.5.1",
    accept_ack: str = "",
    application_ack: str = "",
    charset: str = "",
    patient_name: str = "TESTPATIENT^ALEX",
    separator: str = "\r",
    encoding_characters: str = "^~\\&",
) -> str:
    """An ORM^O01 with two order groups, as text (encode it as the test needs)."""
    msh = (
        f"MSH|{encoding_characters}|{sending_application}|{sending_facility}|LABINTAKE|REFLAB|"
        f"20250102030405||{message_type}|{control_id}|P|{version}|||{accept_ack}|"
        f"{application_ack}||{charset}"
    ).rstrip("|")
    segments = [
        msh,
        f"PID|1||MRN00042^^^NORTHSIDE^MR||{patient_name}||19700101|F",
        "PV1|1|O",
        "ORC|NW|PLACER1|||||||20250102030405|||1234567893^WELBY^MARCUS^^^^^^NPI",
        "OBR|1|PLACER1||CBC^COMPLETE BLOOD COUNT^L|||20250102030405",
        "DG1|1||D64.9^Anemia, unspecified^I10",
        "ORC|NW|PLACER2|||||||20250102030405",
        "OBR|2|PLACER2||BMP^BASIC METABOLIC PANEL^L",
    ]
    return separator.join(segments) + separator


def parse_ack(ack: bytes, version: str, encoding: str = "ascii") -> Message:
    """Parse an ACK with hl7apy at strict validation (the test oracle) and validate it."""
    message = Message("ACK", version=version, validation_level=VALIDATION_LEVEL.STRICT)
    message.children = parse_segments(
        ack.decode(encoding),
        version,
        validation_level=VALIDATION_LEVEL.STRICT,
        references=message.reference,
    )
    message.validate()
    return message


def msa(ack: bytes) -> list[str]:
    """The MSA fields of an ACK (index 1 is MSA-1)."""
    for segment in ack.decode("latin-1").split("\r"):
        if segment.startswith("MSA"):
            return segment.split(segment[3])
    raise AssertionError(f"no MSA in {ack!r}")


def err(ack: bytes) -> list[str]:
    """The ERR fields of an ACK (index 2 is ERR-2)."""
    for segment in ack.decode("latin-1").split("\r"):
        if segment.startswith("ERR"):
            return segment.split(segment[3])
    raise AssertionError(f"no ERR in {ack!r}")


def stored_rows(engine: Engine, columns: str = "*") -> list[dict[str, object]]:
    """Every stored message (`columns` of it, `id` among them): in the database, and in
    intake's journal beside a SQLite file (where acknowledged messages wait to be moved in
    while `labintake serve` runs). A row copied in but not yet deleted from the journal is one
    message."""
    query = text(f"SELECT {columns} FROM inbound_message ORDER BY id")
    with engine.connect() as connection:
        stored = {row["id"]: dict(row) for row in connection.execute(query).mappings()}
    path = journal_path(engine)
    if path is not None and path.exists():
        journal = make_engine(f"sqlite:///{path}")
        try:
            with journal.connect() as connection:
                if inspect(connection).has_table("inbound_message"):
                    for row in connection.execute(query).mappings():
                        stored.setdefault(row["id"], dict(row))
        finally:
            journal.dispose()
    return [stored[key] for key in sorted(stored, key=lambda key: int(str(key)))]


@asynccontextmanager
async def running_server(
    settings: Settings,
    engine: Engine,
    *,
    interfaces: InterfaceRegistry | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[MLLPServer]:
    """Intake plus an MLLP server on a free port, stopped afterwards."""
    intake = Intake(
        settings, engine, interfaces=interfaces if interfaces is not None else InterfaceRegistry([])
    )
    intake.start()
    server = MLLPServer(
        intake,
        host="127.0.0.1",
        port=0,
        max_message_bytes=settings.max_message_bytes,
        idle_timeout=settings.idle_timeout_seconds,
        max_connections=settings.max_connections,
        max_connections_per_peer=settings.max_connections_per_peer,
        frame_timeout=settings.frame_timeout_seconds,
        ssl_context=ssl_context,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=5.0)
        await asyncio.to_thread(intake.close)
