"""Segment splitting and escape decoding, checked against python-hl7 as the reference."""

from __future__ import annotations

from typing import Any

import hl7
from hypothesis import given, settings
from hypothesis import strategies as st

from labintake.errors import OrderReadError
from labintake.hl7.escapes import EncodingCharacters, unescape
from labintake.hl7.reader import read_orders
from labintake.hl7.segments import split_segments

MSH = "MSH|^~\\&|A|B|C|D|20240101||ORM^O01|1|P|2.5.1"
CHARS = EncodingCharacters()


def _pick(node: Any, index: int) -> Any:
    if isinstance(node, str):
        return node if index == 1 else ""
    return node[index - 1] if 0 < index <= len(node) else ""


def _reference(message: Any, segment: int, field: int, rep: int, comp: int, sub: int) -> str:
    """The leaf python-hl7 gives for the same position."""
    data = message[segment]
    node = data[field] if field < len(data) else ""
    for index in (rep, comp, sub):
        node = _pick(node, index)
    return node if isinstance(node, str) else str(node)


fields = st.text(alphabet="ab^~&", max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(fields, min_size=1, max_size=6))
def test_every_leaf_matches_python_hl7(values: list[str]) -> None:
    text = MSH + "\rZZZ|" + "|".join(values)
    mine = split_segments(text).segments[1]
    reference = hl7.parse(text)
    for field in range(1, len(values) + 2):
        for rep in (1, 2, 3):
            for comp in (1, 2, 3, 4):
                for sub in (1, 2, 3):
                    expected = _reference(reference, 1, field, rep, comp, sub)
                    assert mine.text(field, comp, rep, sub) == expected, (field, rep, comp, sub)


def test_msh_fields_keep_their_numbers() -> None:
    msh = split_segments(MSH + "\rPID|1").msh
    assert (msh.text(1), msh.text(2), msh.text(3), msh.text(9, 2)) == ("|", "^~\\&", "A", "O01")
    reference = hl7.parse(MSH + "\rPID|1").segment("MSH")
    assert str(reference[9]) == msh.raw(9)


def test_escape_sequences() -> None:
    def decode(value: str, codec: str = "utf-8") -> tuple[str, list[str]]:
        remarks: list[str] = []
        return unescape(value, CHARS, codec, remarks), remarks

    assert decode("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f") == ("a|b^c&d~e\\f", [])
    assert decode("x\\.br\\y\\.sp2\\z\\.in4\\w") == ("x\ny\n\nzw", [])
    assert decode("\\XC3A9\\") == ("é", [])
    assert decode("\\XE9\\") == ("é", [])  # not UTF-8: read as Latin-1
    assert decode("\\XE9\\", "latin-1") == ("é", [])
    assert decode("open \\F without end") == ("open \\F without end", [])
    assert decode("\\H\\bold\\N\\") == ("bold", [])
    assert decode("\\C2842\\x") == ("x", ["escape sequence \\C2842\\ not supported: dropped"])
    assert decode("\\XZZ\\") == ("XZZ", ["escape sequence XZZ is not hexadecimal: kept as text"])
    truncation = EncodingCharacters.from_msh("|", "^~\\&#")
    assert truncation.truncation == "#"
    assert unescape("a\\P\\b", truncation) == "a#b"


def test_other_separators_are_honoured() -> None:
    text = "MSH#$*!@#A#B\rPID#1##X1$$$AUTH$MR*X2##Doe$Jane@Q"
    pid = split_segments(text).segments[1]
    assert (pid.text(3, 1), pid.text(3, 5), pid.text(3, 1, rep=2)) == ("X1", "MR", "X2")
    assert (pid.text(5, 2), pid.text(5, 2, sub=2)) == ("Jane", "Q")


segment_names = st.sampled_from(
    ["PID", "PV1", "IN1", "ORC", "OBR", "TQ1", "DG1", "NTE", "OBX", "SPM", "ZZ1"]
)
values = st.text(alphabet='ab19.-+ ^~&\\"|EFSTXHN', max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(segment_names, st.lists(values, max_size=30)), max_size=12))
def test_reader_never_fails_other_than_with_an_order_read_error(
    body: list[tuple[str, list[str]]],
) -> None:
    text = "\r".join([MSH, *("|".join([name, *fields]) for name, fields in body)])
    reason = ""
    orders = 0
    try:
        orders = len(read_orders(text).orders)
    except OrderReadError as exc:
        reason = exc.text
    assert orders > 0 or reason
