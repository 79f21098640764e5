"""Fast MSH reading."""

from __future__ import annotations

import pytest
from mllp_messages import orm

from labintake.errors import HeaderError
from labintake.hl7.header import parse_header, read_header


def test_header_fields_are_read_from_the_msh_segment() -> None:
    raw = orm(
        "CTRL42",
        sending_application="EPIC^1.2.840.1^ISO",
        accept_ack="AL",
        application_ack="NE",
        charset="UNICODE UTF-8",
    ).encode()
    header = read_header(raw)
    assert header.field_separator == "|"
    assert header.encoding_characters == "^~\\&"
    assert header.sending_application == "EPIC^1.2.840.1^ISO"
    assert header.sending_facility == "NORTHSIDE"
    assert header.receiving_application == "LABINTAKE"
    assert header.receiving_facility == "REFLAB"
    assert header.timestamp == "20250102030405"
    assert (header.message_type, header.trigger_event, header.message_structure) == (
        "ORM",
        "O01",
        "ORM_O01",
    )
    assert header.message_code == "ORM^O01"
    assert header.control_id == "CTRL42"
    assert header.processing_id == "P"
    assert header.version == "2.5.1"
    assert (header.accept_ack_type, header.application_ack_type) == ("AL", "NE")
    assert header.enhanced_mode
    assert header.charset == "UNICODE UTF-8"


def test_other_delimiters_and_five_encoding_characters_are_honoured() -> None:
    raw = b"MSH#$*\\@%#EPIC$X$ISO#NORTH##LAB#20250101##OML$O21$OML_O21#C9#P$T#2.7.1\rPID#1\r"
    header = read_header(raw)
    assert header.field_separator == "#"
    assert header.encoding_characters == "$*\\@%"
    assert header.component_separator == "$"
    assert header.sending_application == "EPIC^X^ISO"
    assert header.message_code == "OML^O21"
    assert header.processing_id == "P"
    assert header.version == "2.7.1"


def test_repeated_fields_use_the_first_repetition() -> None:
    raw = orm(charset="8859/1~UNICODE UTF-8").encode()
    assert read_header(raw).charset == "8859/1"


def test_newline_and_crlf_segment_endings_and_leading_noise_are_accepted() -> None:
    for separator in ("\n", "\r\n"):
        raw = b"\r\n  " + orm("C7", separator=separator).encode()
        assert read_header(raw).control_id == "C7"


def test_non_ascii_header_is_read_in_the_declared_character_set() -> None:
    raw = orm(sending_facility="KÖLN", charset="8859/1").encode("latin-1")
    assert read_header(raw).sending_facility == "KÖLN"
    raw = orm(sending_facility="KÖLN", charset="UNICODE UTF-8").encode("utf-8")
    assert read_header(raw).sending_facility == "KÖLN"


def test_message_without_msh_is_a_header_error_with_location() -> None:
    with pytest.raises(HeaderError) as caught:
        read_header(b"PID|1||123\r")
    assert caught.value.location == "MSH"
    assert caught.value.error_code == "100"
    with pytest.raises(HeaderError):
        read_header(b"")


def test_unusable_separators_are_a_header_error() -> None:
    with pytest.raises(HeaderError) as caught:
        read_header(b"MSHA^~\\&A\r")
    assert caught.value.location == "MSH^1^1"
    with pytest.raises(HeaderError) as caught:
        read_header(b"MSH||\r")
    assert caught.value.location == "MSH^1^2"


def test_missing_control_id_is_a_required_field_error() -> None:
    with pytest.raises(HeaderError) as caught:
        read_header(orm(control_id="").encode())
    assert (caught.value.location, caught.value.error_code) == ("MSH^1^10", "101")
    assert parse_header(orm(control_id="").encode()).message_code == "ORM^O01"


def test_missing_message_type_is_a_required_field_error() -> None:
    with pytest.raises(HeaderError) as caught:
        read_header(orm(message_type="").encode())
    assert (caught.value.location, caught.value.error_code) == ("MSH^1^9", "101")


def test_short_msh_gives_empty_fields_not_an_exception() -> None:
    header = parse_header(b"MSH|^~\\&|APP\r")
    assert header.sending_application == "APP"
    assert header.control_id == ""
    assert not header.enhanced_mode
