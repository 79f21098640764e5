"""Text that used to go wrong: MSH-18 UTF-16 on ASCII bytes, and NUL characters.

- A message declaring ``UNICODE UTF-16`` but sent in ASCII was acknowledged AA and then read
  as UTF-16: every pair of bytes became one CJK character and the order was garbage.
- ``\\X00\\`` in PID-5 decoded to a NUL character: SQLite stored it, PostgreSQL refused the
  text ("storage refused"); one behaviour on both now: NUL characters are dropped.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from mllp_messages import msa, orm
from sqlalchemy.engine import Engine
from test_reading import REGISTRY, hl7, message_row, orders_of, read_pending, store

from labintake.config import Settings
from labintake.hl7.charset import decode_message
from labintake.hl7.escapes import EncodingCharacters, unescape
from labintake.intake import Intake
from labintake.interfaces import InterfaceRegistry
from labintake.queue.raw_message import show_message


def test_utf16_declared_on_ascii_bytes_is_read_as_ascii_and_says_why() -> None:
    raw = orm("U1", charset="UNICODE UTF-16").encode("ascii")
    decoded = decode_message(raw, "UNICODE UTF-16")
    assert decoded.text == raw.decode("ascii")
    assert decoded.fallback
    assert decoded.encoding == "utf-8"
    assert "not UTF-16" in decoded.note


def test_real_utf16_still_decodes_as_declared() -> None:
    text = orm("U2", charset="UNICODE UTF-16", patient_name="Zoë^Müller")
    for codec in ("utf-16", "utf-16-le", "utf-16-be"):
        decoded = decode_message(text.encode(codec), "UNICODE UTF-16")
        if codec == "utf-16":  # with a byte order mark
            assert decoded.text == text
            assert not decoded.fallback


def test_utf32_declared_on_ascii_bytes_falls_back_too() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20250101||ORM^O01|1|P|2.5.1||||||UNICODE UTF-32\r"
    decoded = decode_message(raw, "UNICODE UTF-32")
    assert decoded.text == raw.decode()
    assert "not UTF-32" in decoded.note


def test_utf16_on_ascii_is_logged_at_intake_and_read_cleanly(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    raw = (
        "MSH|^~\\&|EHR|CLINIC|LAB|LAB|20240301101500||ORM^O01|U33|P|2.5.1||||||"
        "UNICODE UTF-16\r"
        "PID|1||MRN1^^^CLINIC^MR||Doe^Jane||19600101|F\r"
        "ORC|NW|P1\rOBR|1|P1||80061^Lipid^CPT\r"
    ).encode("ascii")
    assert len(raw) % 2 == 0  # even: it decodes as UTF-16 without an error

    async def go() -> bytes:
        async with Intake(settings, engine, interfaces=InterfaceRegistry([])) as intake:
            return await intake.handle(raw, "192.0.2.1:1")

    with caplog.at_level(logging.WARNING, logger="labintake.intake"):
        ack = asyncio.run(go())
    assert msa(ack)[1] == "AA"
    assert any("MSH-18" in r.getMessage() for r in caplog.records)
    read_pending(engine, REGISTRY)
    [order] = orders_of(engine, _only_message_id(engine))
    assert (order.patient_family_name, order.patient_given_name) == ("Doe", "Jane")
    assert any("not UTF-16" in w for w in order.details["warnings"])
    shown = show_message(raw, "UNICODE UTF-16")  # the order page's raw message view
    assert [s.segment_id for s in shown.segments] == ["MSH", "PID", "ORC", "OBR"]
    assert shown.fallback_decoding


def _only_message_id(engine: Engine) -> int:
    from sqlmodel import Session, select

    from labintake.models import InboundMessage

    with Session(engine) as session:
        ids = session.exec(select(InboundMessage.id)).all()
    assert len(ids) == 1
    assert ids[0] is not None
    return ids[0]


def test_hex_escaped_nul_is_dropped_with_a_remark() -> None:
    remarks: list[str] = []
    assert unescape("Doe\\X00\\", EncodingCharacters(), "utf-8", remarks) == "Doe"
    assert unescape("A\\X004200\\B", EncodingCharacters()) == "ABB"
    assert remarks == ["escape sequence \\X00\\ gives a NUL character: dropped"]


@pytest.mark.parametrize("nul", ["\\X00\\", "\x00"], ids=["escaped", "raw-byte"])
def test_nul_in_the_patient_name_is_read_the_same_on_both_databases(
    engine: Engine, nul: str
) -> None:
    message = hl7(
        "N1",
        f"PID|1||MRN1^^^CLINIC^MR||Doe{nul}^Jane||19600101|F",
        "ORC|NW|P1",
        "OBR|1|P1||80061^Lipid^CPT",
    )
    message_id = store(engine, message, "N1")
    read_pending(engine, REGISTRY)
    assert message_row(engine, message_id).status == "read"
    [order] = orders_of(engine, message_id)
    assert order.patient_family_name == "Doe"
