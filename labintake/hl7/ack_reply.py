"""Reading an acknowledgement a receiver sent back (the LIS, a placer): MSA and ERR.

Pure: bytes in, an :class:`AckReply` out. The message is split with the project's own
segment splitter (:mod:`labintake.hl7.segments`), lenient on line endings, blank lines and
framing bytes as for inbound orders. Field values are taken as sent (escape sequences kept),
so MSA-2 compares byte for byte with the control id that went out.
"""

from __future__ import annotations

from dataclasses import dataclass

from labintake.errors import OrderReadError
from labintake.hl7.segments import Segment, split_segments

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


def _value(segment: Segment, number: int) -> str:
    return segment.raw(number).strip()


def read_ack(raw: bytes) -> AckReply:
    """MSA-1, MSA-2 and the error text (MSA-3, then ERR-8 or else ERR-1 of each ERR)."""
    try:
        message = split_segments(raw.decode("utf-8", errors="replace"))
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
