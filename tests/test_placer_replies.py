"""Placer replies (ORR^O02 / ORL^O22): each value escaped once.

hl7apy escaped the backslashes of the ``\\Xhh\\`` sequences it was given again, so a reject
reason with a line break reached the placer as ``\\E\\X0D\\E\\`` and read as garbled text.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

from labintake.hl7.escapes import EncodingCharacters, unescape
from labintake.hl7.replies import ReplyFacts, build_reply

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REASON = "Specimen hemolysed\r\nplease redraw | call 555-0100 & ask for C\\D ^ lab"


def _facts(**changes: str) -> ReplyFacts:
    values = {
        "original_control_id": "NS1001",
        "original_type": "ORM^O01",
        "version": "2.5.1",
        "placer_application": "EPIC",
        "placer_facility": "NORTHSIDE",
        "placer_order_number": "PL-77",
        "filler_order_number": "LI42",
        "patient_mrn": "MRN00042",
        "order_control": "UA",
        "reason": REASON,
    }
    values.update(changes)
    return ReplyFacts(**values)


def _segment(reply: bytes, name: str) -> list[str]:
    for segment in reply.decode("utf-8").split("\r"):
        if segment.startswith(name):
            return segment.split("|")
    raise AssertionError(f"no {name} in {reply!r}")


def test_reason_with_line_breaks_and_delimiters_is_escaped_once() -> None:
    reply = build_reply(_facts(), "R1", NOW, "LABINTAKE")
    nte3 = _segment(reply, "NTE")[3]
    assert "\\E\\X" not in nte3
    assert nte3 == (
        "Specimen hemolysed\\X0D\\\\X0A\\please redraw \\F\\ call 555-0100 \\T\\ ask for "
        "C\\E\\D \\S\\ lab"
    )
    assert unescape(nte3, EncodingCharacters()) == REASON


@pytest.mark.parametrize(
    ("original_type", "structure"), [("ORM^O01", "ORR_O02"), ("OML^O21", "ORL_O22")]
)
def test_reply_parses_as_its_structure_with_the_values_back(
    original_type: str, structure: str
) -> None:
    reply = build_reply(_facts(original_type=original_type), "R1", NOW, "LABINTAKE")
    # Tolerant: the reply carries no PID-5 (the placer knows its patient by PID-3).
    message = parse_message(
        reply.decode("utf-8"), validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True
    )
    assert message.name == structure
    assert [c.name for c in message.children] == ["MSH", "MSA", "NTE", f"{structure}_RESPONSE"]
    assert message.msh.msh_9.to_er7() == f"{structure[:3]}^{structure[4:]}^{structure}"
    assert message.msa.msa_2.to_er7() == "NS1001"


def test_plain_values_give_what_the_hl7apy_tree_gave() -> None:
    """Without anything to escape, the ER7 writer gives the bytes hl7apy's tree wrote."""
    facts = _facts(reason="Specimen hemolysed")
    reply = build_reply(facts, "R1", NOW, "LABINTAKE")
    tree = Message("ORR_O02", version="2.5.1", validation_level=VALIDATION_LEVEL.TOLERANT)
    tree.msh.msh_3 = "LABINTAKE"
    tree.msh.msh_5 = "EPIC"
    tree.msh.msh_6 = "NORTHSIDE"
    tree.msh.msh_7 = "20260301120000+0000"
    tree.msh.msh_9 = "ORR^O02^ORR_O02"
    tree.msh.msh_10 = "R1"
    tree.msh.msh_11 = "P"
    tree.msh.msh_12 = "2.5.1"
    msa = tree.add_segment("MSA")
    msa.msa_1 = "AA"
    msa.msa_2 = "NS1001"
    tree.add_segment("NTE").nte_3 = "Specimen hemolysed"
    response = tree.add_group("ORR_O02_RESPONSE")
    pid = response.add_group("ORR_O02_PATIENT").add_segment("PID")
    pid.pid_1 = "1"
    pid.pid_3 = "MRN00042"
    orc = response.add_group("ORR_O02_ORDER").add_segment("ORC")
    orc.orc_1 = "UA"
    orc.orc_2 = "PL-77^NORTHSIDE"
    orc.orc_3 = "LI42"
    assert reply == (tree.to_er7() + "\r").encode("utf-8")


def test_version_27_declares_and_escapes_the_truncation_character() -> None:
    reply = build_reply(_facts(version="2.7", reason="#1 tube"), "R1", NOW, "LABINTAKE")
    assert reply.startswith(b"MSH|^~\\&#|")
    assert _segment(reply, "NTE")[3] == "\\P\\1 tube"
