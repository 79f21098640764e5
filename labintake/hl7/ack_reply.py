"""Reading an acknowledgement a receiver sent back (the LIS, a placer): MSA and ERR.

Pure: bytes in, an :class:`AckReply` out. The message is split with the project's own
segment splitter (:mod:`labintake.hl7.segments`), lenient on line endings, blank lines and
framing bytes as for inbound orders. Field values are taken as sent (escape sequences kept),
so MSA-2 compares byte for byte with the control id that went out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labintake.errors import OrderReadError
from labintake.hl7.segments import HL7_NULL, Segment, split_segments

ACCEPTED = frozenset({"AA", "CA"})
REFUSED = frozenset({"AE", "AR", "CE", "CR"})


class UnreadableAck(ValueError):
    """The bytes are not an acknowledgement: no HL7 message, no MSA segment or no MSA-1."""


@dataclass(frozen=True, slots=True)
class AckReply:
    code: str  # MSA-1
    control_id: str  # MSA-2, the id of the message acknowledged
    text: str  # MSA-3 or ERR text, for a person to read

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPTED


# The usual acknowledgement: the default encoding characters, one segment a line, lines
# ended by CR, no second MSH, nothing around it. It is read by splitting its lines on "|"
# (what the general splitter gives for such a message, for a fraction of its time: the
# sender reads one per message); anything else goes through `split_segments`.
_PLAIN = re.compile(
    r"MSH\|\^~\\&\|[^\r\n\x00\x0b\x1c]*"
    r"(?:\r(?!MSH)[A-Z][A-Z0-9]{2}\|[^\r\n\x00\x0b\x1c]*)*\r?\Z"
)


def _value(segment: Segment, number: int) -> str:
    return segment.raw(number).strip()


def _plain_value(fields: list[str], number: int) -> str:
    value = fields[number] if number < len(fields) else ""
    return "" if value == HL7_NULL else value.strip()


def _read_plain(text: str) -> AckReply:
    """`read_ack` for a message `_PLAIN` matches."""
    msa: list[str] | None = None
    notes: list[str] = []
    for line in text.split("\r"):
        if line.startswith("MSA|") and msa is None:
            msa = line.rstrip(" \t").split("|")
        elif line.startswith("ERR|"):
            err = line.rstrip(" \t").split("|")
            notes.append(_plain_value(err, 8) or _plain_value(err, 1))
    if msa is None:
        raise UnreadableAck("unreadable acknowledgement: no MSA segment")
    code = _plain_value(msa, 1).upper()
    if not code:
        raise UnreadableAck("acknowledgement without MSA-1")
    notes.insert(0, _plain_value(msa, 3))
    return AckReply(
        code=code, control_id=_plain_value(msa, 2), text="; ".join(n for n in notes if n)
    )


def read_ack(raw: bytes) -> AckReply:
    """MSA-1, MSA-2 and the error text (MSA-3, then ERR-8 or else ERR-1 of each ERR)."""
    text = raw.decode("utf-8", errors="replace")
    if _PLAIN.match(text):
        return _read_plain(text)
    return _read_segments(text)


def _read_segments(text: str) -> AckReply:
    """`read_ack` through the general, lenient segment splitter."""
    try:
        message = split_segments(text)
    except OrderReadError as exc:
        raise UnreadableAck(f"unreadable acknowledgement: {exc}") from exc
    msa = next((segment for segment in message if segment.name == "MSA"), None)
    if msa is None:
        raise UnreadableAck("unreadable acknowledgement: no MSA segment")
    code = _value(msa, 1).upper()
    if not code:
        raise UnreadableAck("acknowledgement without MSA-1")
    notes = [_value(msa, 3)]
    for err in (segment for segment in message if segment.name == "ERR"):
        notes.append(_value(err, 8) or _value(err, 1))
    return AckReply(code=code, control_id=_value(msa, 2), text="; ".join(n for n in notes if n))
