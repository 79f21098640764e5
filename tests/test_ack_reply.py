"""Reading the receiver's acknowledgement (what the LIS or a placer answers) with the
project's own segment splitter; python-hl7's tree is the reference it is held to."""

from __future__ import annotations

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mllp_messages import orm

from labintake.errors import UnsupportedMessageError
from labintake.hl7.ack import build_ack
from labintake.hl7.ack_reply import AckReply, UnreadableAck, _read_segments, read_ack
from labintake.hl7.header import read_header
from labintake.release.connection import DeliveryFailure, parse_ack

MSH = "MSH|^~\\&|LIS|LAB|LABINTAKE|REFLAB|20260101120000||ACK^O01^ACK|A1|P|2.5.1"


def python_hl7_reading(raw: bytes) -> AckReply:
    """What python-hl7 reads from the same bytes: field values as sent, stripped."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\r").replace("\n", "\r")
    message = hl7.parse("\r".join(s for s in text.split("\r") if s.strip()))
    msa = message.segment("MSA")
    value = lambda segment, n: str(segment(n)).strip() if len(segment) > n else ""  # noqa: E731
    notes = [value(msa, 3)]
    for err in (s for s in message if str(s[0]) == "ERR"):
        notes.append(value(err, 8) or value(err, 1))
    return AckReply(value(msa, 1).upper(), value(msa, 2), "; ".join(n for n in notes if n))


def test_accept_with_crlf_blank_lines_and_framing_bytes() -> None:
    raw = f"\x0b{MSH}\r\n\r\nMSA|aa|C100\n\x1c\r".encode()
    reply = read_ack(raw)
    assert reply == AckReply("AA", "C100", "")
    assert reply.accepted


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5.1", "2.8"])
def test_our_own_error_acks_read_back_code_control_id_and_text(version: str) -> None:
    header = read_header(orm("C7", version=version, message_type="ADT^A01").encode())
    error = UnsupportedMessageError("type not taken", location="MSH^1^9", error_code="200")
    reply = read_ack(build_ack(header, "AR", error))
    assert (reply.code, reply.control_id) == ("AR", "C7")
    assert "type not taken" in reply.text
    assert not reply.accepted


def test_err_8_is_preferred_to_err_1_and_every_err_counts() -> None:
    raw = f"{MSH}\rMSA|AE|C2|see below\rERR|PID^1^3|||||||bad MRN\rERR|OBR^1^4\r".encode()
    assert read_ack(raw).text == "see below; bad MRN; OBR^1^4"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"not hl7 at all", "no MSH"),
        (f"{MSH}\rERR|x".encode(), "no MSA segment"),
        (f"{MSH}\rMSA||C3".encode(), "without MSA-1"),
    ],
)
def test_what_is_not_an_acknowledgement_is_a_clear_error(raw: bytes, reason: str) -> None:
    with pytest.raises(UnreadableAck, match=reason):
        read_ack(raw)
    with pytest.raises(DeliveryFailure, match=reason):
        parse_ack(raw)


_value = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="|\r\n"),
    max_size=12,
)


@given(
    code=st.sampled_from(["AA", "AE", "AR", "CA", "ce", " CR "]),
    control_id=_value,
    text=_value,
    errors=st.lists(st.tuples(_value, _value), max_size=3),
)
def test_reading_equals_python_hl7s(
    code: str, control_id: str, text: str, errors: list[tuple[str, str]]
) -> None:
    segments = [MSH, f"MSA|{code}|{control_id}|{text}"]
    segments += [f"ERR|{err_1}|||||||{err_8}" for err_1, err_8 in errors]
    raw = "\r".join(segments).encode()
    assert read_ack(raw) == python_hl7_reading(raw)


# Lines of an acknowledgement, odd ones included: quoted nulls, blanks at the ends, control
# characters, a second MSH, lines that are not segments, segments without fields.
_line_value = st.text(
    alphabet=st.sampled_from(list('AEX19|^&~\\" \t\x0b\x1c\x00\x0c\u00e9')), max_size=10
)
_line = st.one_of(
    st.builds(lambda v: f"MSA|{v}", _line_value),
    st.builds(lambda a, b, c: f"MSA|{a}|{b}|{c}", _line_value, _line_value, _line_value),
    st.builds(lambda a, b: f"ERR|{a}|||||||{b}", _line_value, _line_value),
    st.builds(lambda v: f"ERR|{v}", _line_value),
    st.sampled_from(["MSA", "ERR", "", " ", "msa|AA|x", "MSH|^~\\&|X", "ZZ1|a|b", "MS|AA"]),
)


@given(
    lines=st.lists(_line, max_size=5),
    ending=st.sampled_from(["", "\r", "\r", "\r\n", "\n"]),
    head=st.sampled_from(
        [MSH, MSH, MSH, "MSH|^~\\&#|LIS", "\ufeff" + MSH, " " + MSH, "MSH|^~\\&|"]
    ),
)
@settings(max_examples=300)
def test_the_quick_reading_of_plain_acks_equals_the_general_one(
    lines: list[str], ending: str, head: str
) -> None:
    text = (ending or "\r").join([head, *lines]) + ending
    try:
        general: AckReply | str = _read_segments(text)
    except UnreadableAck as exc:
        general = str(exc)
    try:
        quick: AckReply | str = read_ack(text.encode())
    except UnreadableAck as exc:
        quick = str(exc)
    assert quick == general
