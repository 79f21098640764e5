"""ACK building; hl7apy (strict validation) parses every ACK back as the oracle."""

from __future__ import annotations

import pytest
from mllp_messages import orm, parse_ack

from labintake.errors import HeaderError, UnsupportedMessageError
from labintake.hl7.ack import (
    ACCEPT,
    ERROR,
    REJECT,
    ack_code,
    build_ack,
    new_control_id,
    reply_wanted,
)
from labintake.hl7.header import Header, read_header

# Every version hl7apy knows (it has no 2.7.1 tables; 2.7.1 ACKs are built the same as 2.7).
VERSIONS = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"]


@pytest.mark.parametrize("version", VERSIONS)
def test_accept_ack_mirrors_the_sender_and_validates(version: str) -> None:
    header = read_header(orm("C100", version=version).encode())
    ack = build_ack(header, "AA")
    message = parse_ack(ack, version)
    msh = message.msh
    assert msh.msh_3.to_er7() == "LABINTAKE"  # the sender's MSH-5
    assert msh.msh_4.to_er7() == "REFLAB"
    assert msh.msh_5.to_er7() == "EPIC"
    assert msh.msh_6.to_er7() == "NORTHSIDE"
    assert msh.msh_12.to_er7() == version
    assert msh.msh_10.to_er7() not in ("", "C100")
    assert message.msa.msa_1.to_er7() == "AA"
    assert message.msa.msa_2.to_er7() == "C100"
    assert "ERR" not in [segment.name for segment in message.children]


@pytest.mark.parametrize("version", ["2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_error_ack_v25_and_later_carries_location_code_severity_and_text(version: str) -> None:
    header = read_header(orm("C101", version=version, message_type="ADT^A01").encode())
    error = UnsupportedMessageError(
        "message type ADT^A01 is not accepted", location="MSH^1^9", error_code="200"
    )
    message = parse_ack(build_ack(header, "AR", error), version)
    assert message.msa.msa_1.to_er7() == "AR"
    assert message.err.err_2.to_er7() == "MSH^1^9"
    assert message.err.err_3.to_er7() == "200^Unsupported message type^HL70357"
    assert message.err.err_4.to_er7() == "E"
    assert message.err.err_8.to_er7() == "message type ADT\\S\\A01 is not accepted"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4"])
def test_error_ack_before_v25_uses_err1_and_msa3(version: str) -> None:
    header = read_header(orm("C102", version=version).encode())
    error = HeaderError("control id missing", location="MSH^1^10", error_code="101")
    message = parse_ack(build_ack(header, "AE", error), version)
    assert message.msa.msa_1.to_er7() == "AE"
    assert message.msa.msa_3.to_er7() == "control id missing"
    assert message.err.err_1.to_er7() == "MSH^1^10^101&Required field missing&HL70357"


def test_error_text_delimiters_are_escaped_and_line_breaks_removed() -> None:
    header = read_header(orm().encode())
    error = UnsupportedMessageError("a|b^c~d\\e&f\r\ng", error_code="207")
    ack = build_ack(header, "AE", error)
    err = ack.decode().split("\r")[2]
    assert err.endswith("|a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f g")
    assert parse_ack(ack, "2.5.1").err.err_8.to_er7() == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f g"


def test_ack_uses_the_senders_delimiters() -> None:
    raw = b"MSH#$*\\@#EPIC$X#NORTH#LAB#REF#20250101##ORM$O01$ORM_O01#C9#P#2.5.1\rPID#1\r"
    header = read_header(raw)
    error = UnsupportedMessageError("x$y", location="MSH^1^9", error_code="200")
    text = build_ack(header, "AR", error).decode()
    assert text.startswith("MSH#$*\\@#LAB#REF#EPIC$X#NORTH#")
    assert "#ACK$O01$ACK#" in text
    assert "\rMSA#AR#C9\r" in text
    assert "\rERR##MSH$1$9#200$Unsupported message type$HL70357#E####x\\S\\y\r" in text


def test_ack_is_encoded_in_the_senders_character_set() -> None:
    for charset, codec in (("8859/1", "latin-1"), ("UNICODE UTF-8", "utf-8")):
        raw = orm(sending_facility="KÖLN", charset=charset).encode(codec)
        ack = build_ack(read_header(raw), "AA")
        assert "|KÖLN|" in ack.decode(codec)
        assert ack.decode(codec).split("\r")[0].endswith(f"|{charset}")
        parse_ack(ack, "2.5.1", codec)


def test_unsupported_version_is_answered_in_251() -> None:
    header = read_header(orm(version="9.9").encode())
    message = parse_ack(build_ack(header, "AR"), "2.5.1")
    assert message.msh.msh_12.to_er7() == "2.5.1"


def test_header_less_ack_uses_defaults_and_leaves_msa2_empty() -> None:
    error = HeaderError("no MSH", location="MSH", error_code="100")
    text = build_ack(Header(), "AR", error).decode()
    # No control id to echo: MSA-2 stays empty rather than inventing one.
    assert text.split("\r")[1] == "MSA|AR|"
    assert text.split("\r")[2].startswith("ERR||MSH^1|100^Segment sequence error^HL70357|E|")
    assert "|2.5.1" in text.split("\r")[0]


def test_enhanced_mode_uses_commit_codes() -> None:
    original = read_header(orm().encode())
    enhanced = read_header(orm(accept_ack="AL", application_ack="NE").encode())
    assert [ack_code(original, o) for o in (ACCEPT, ERROR, REJECT)] == ["AA", "AE", "AR"]
    assert [ack_code(enhanced, o) for o in (ACCEPT, ERROR, REJECT)] == ["CA", "CE", "CR"]
    parse_ack(build_ack(enhanced, "CA"), "2.5.1")


@pytest.mark.parametrize(
    ("msh15", "wanted"),
    [
        ("", (True, True, True)),
        ("AL", (True, True, True)),
        ("NE", (False, False, False)),
        ("ER", (False, True, True)),
        ("SU", (True, False, False)),
    ],
)
def test_msh15_decides_when_a_commit_ack_is_sent(msh15: str, wanted: tuple[bool, ...]) -> None:
    header = read_header(orm(accept_ack=msh15).encode())
    assert tuple(reply_wanted(header, o) for o in (ACCEPT, ERROR, REJECT)) == wanted


def test_enhanced_mode_with_only_msh16_acks_always() -> None:
    header = read_header(orm(application_ack="AL").encode())
    assert header.enhanced_mode
    assert reply_wanted(header, ACCEPT)
    assert ack_code(header, ACCEPT) == "CA"


def test_control_ids_are_unique_and_fit_msh10() -> None:
    ids = {new_control_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert max(len(i) for i in ids) <= 20
