"""Splitting a file of HL7 messages: plain runs of messages, or FHS/BHS batches.

A file may hold one message, several (each starting at its MSH segment, optionally with
blank lines between), or batches wrapped in FHS/BHS ... BTS/FTS. Lines may end in ``\\r``,
``\\n`` or ``\\r\\n``; messages come out with ``\\r`` segment separators, ready to send.
Batch envelope segments are dropped; BTS-1 (the batch's message count) is checked when given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labintake.errors import HL7Error

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


@dataclass(slots=True)
class SplitFile:
    """The messages of one file, and anything odd noticed on the way."""

    messages: list[bytes] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    batches: int = 0


def _segment_id(line: bytes) -> bytes:
    return line[:3]


def _bts_count(line: bytes) -> int | None:
    separator = line[3:4] or b"|"
    fields = line.split(separator)
    if len(fields) > 1 and fields[1].strip().isdigit():
        return int(fields[1].strip())
    return None


def split_messages(data: bytes) -> SplitFile:
    """Every message in `data` (see the module docstring); raises HL7Error on stray text."""
    result = SplitFile()
    current: list[bytes] = []
    in_batch_count = 0

    def finish() -> None:
        nonlocal in_batch_count
        if current:
            result.messages.append(b"\r".join(current) + b"\r")
            current.clear()
            in_batch_count += 1

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, line in enumerate(_LINE_BREAK.split(data), start=1):
        stripped = line.strip(b" \t\x0b\x1c\x00")
        if not stripped:
            finish()
            continue
        segment = _segment_id(stripped)
        if segment == b"MSH":
            finish()
            current.append(stripped)
        elif segment in _ENVELOPE:
            finish()
            if segment == b"BHS":
                result.batches += 1
                in_batch_count = 0
            elif segment == b"BTS":
                declared = _bts_count(stripped)
                if declared is not None and declared != in_batch_count:
                    result.warnings.append(
                        f"line {number}: BTS-1 says {declared} messages, "
                        f"the batch holds {in_batch_count}"
                    )
        elif current:
            current.append(stripped)
        else:
            raise HL7Error(
                f"line {number}: segment {segment.decode('latin-1')!r} outside any message "
                "(each message must start with MSH)",
                location=f"{segment.decode('latin-1')}",
                error_code="100",
            )
    finish()
    return result
