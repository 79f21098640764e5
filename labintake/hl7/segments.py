"""A message as a list of segments, read with python-hl7, with plain-text field access.

python-hl7 does the splitting (fast: well under a millisecond for an order message); this
module makes its irregular nesting (a leaf string may sit at any depth) answer one question:
"what is field n, repetition r, component c, subcomponent s, as text?", with escape sequences
decoded and the HL7 null `""` read as empty. Each segment knows its place in the message, so
every value can say where it came from ("DG1[2]-3": field 3 of the second DG1).

Lenient on what real feeds do: `\\r`, `\\n` or `\\r\\n` between segments, blank lines, MLLP
framing bytes left around the text, lines that are not segments (skipped, with a remark).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import hl7

from labintake.errors import OrderReadError
from labintake.hl7.charset import codec_for
from labintake.hl7.escapes import EncodingCharacters, unescape

HL7_NULL = '""'
_SINGLE = frozenset({"MSH", "PID"})
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")


def _pick(node: Any, index: int) -> Any:
    """Child `index` (1-based) of a python-hl7 container; a bare string is its own first child."""
    if isinstance(node, str):
        return node if index == 1 else ""
    return node[index - 1] if 0 < index <= len(node) else ""


@dataclass(slots=True)
class Segment:
    """One segment of a message, with its place: `occurrence` among segments of its name."""

    name: str
    occurrence: int
    line: int
    data: Any  # the python-hl7 Segment
    chars: EncodingCharacters
    codec: str
    remarks: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """ "DG1[2]"; MSH and PID, one per message, go without the occurrence."""
        if self.name in _SINGLE:
            return self.name
        return f"{self.name}[{self.occurrence}]"

    def loc(self, number: int, component: int | None = None) -> str:
        suffix = f".{component}" if component is not None else ""
        return f"{self.ref}-{number}{suffix}"

    def _field(self, number: int) -> Any:
        # python-hl7 keeps MSH-1 at index 1, so index n is field n for every segment.
        return self.data[number] if 0 < number < len(self.data) else ""

    def raw(self, number: int) -> str:
        """The whole field as sent (separators included, escapes not decoded)."""
        value = self._field(number)
        text = value if isinstance(value, str) else str(value)
        return "" if text == HL7_NULL else text

    def repetitions(self, number: int) -> int:
        value = self._field(number)
        if isinstance(value, str):
            return 1 if value else 0
        return len(value)

    def text(self, number: int, component: int = 1, rep: int = 1, sub: int = 1) -> str:
        """One leaf value, escapes decoded, `""` read as empty, surrounding blanks removed."""
        node = _pick(_pick(_pick(self._field(number), rep), component), sub)
        value = node if isinstance(node, str) else str(node)
        if value == HL7_NULL:
            return ""
        if self.chars.escape in value:
            remarks: list[str] = []
            value = unescape(value, self.chars, self.codec, remarks)
            self.remarks.extend(f"{self.loc(number, component)}: {r}" for r in remarks)
        return value.strip()

    def components(self, number: int, rep: int = 1) -> list[str]:
        """Every component of one repetition, as text."""
        node = _pick(self._field(number), rep)
        count = 1 if isinstance(node, str) else max(len(node), 1)
        return [self.text(number, c, rep) for c in range(1, count + 1)]

    def is_empty(self, number: int) -> bool:
        return not any(
            any(self.components(number, r)) for r in range(1, self.repetitions(number) + 1)
        )


@dataclass(frozen=True, slots=True)
class SegmentList:
    """The segments of one message in order, MSH first, plus remarks made while splitting."""

    segments: Sequence[Segment]
    chars: EncodingCharacters
    remarks: tuple[str, ...]

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)


def split_segments(text: str) -> SegmentList:
    """Split one message into segments; OrderReadError when it is not an HL7 message at all."""
    remarks: list[str] = []
    lines: list[tuple[int, str]] = []
    for number, line in enumerate(_LINE_SPLIT.split(text.lstrip("\ufeff")), start=1):
        line = line.strip("\x0b\x1c\x00 \t")
        if line:
            lines.append((number, line))
    if not lines:
        raise OrderReadError("the message is empty", location="MSH", error_code="100")
    first = lines[0][1]
    if not first.startswith("MSH") or len(first) < 8:
        raise OrderReadError(
            f"no MSH segment: the message starts with {first[:20]!r}",
            location="MSH",
            error_code="100",
        )
    separator = first[3]
    encoding_end = first.find(separator, 4)
    if encoding_end == -1:
        raise OrderReadError(
            "MSH-2 encoding characters are not followed by any field", location="MSH-2"
        )
    chars = EncodingCharacters.from_msh(separator, first[4:encoding_end])
    if len({chars.field, chars.component, chars.repetition, chars.escape, chars.subcomponent}) < 5:
        raise OrderReadError(
            f"MSH-1/MSH-2 {first[3:encoding_end]!r} do not give five distinct separators",
            location="MSH-2",
            error_code="102",
        )

    kept: list[tuple[int, str, str]] = []
    for number, line in lines:
        name = line[:3]
        if not _SEGMENT_ID.match(name) or (len(line) > 3 and line[3] != separator):
            remarks.append(f"line {number} is not a segment, ignored: {line[:30]!r}")
            continue
        if name == "MSH" and kept:
            raise OrderReadError(
                f"a second MSH at line {number}: one message per stored message",
                location=f"MSH[{sum(1 for k in kept if k[1] == 'MSH') + 1}]",
                error_code="100",
            )
        kept.append((number, name, line))

    parsed = hl7.parse("\r".join(line for _, _, line in kept))
    seen: dict[str, int] = {}
    segments: list[Segment] = []
    for (number, name, _), data in zip(kept, parsed, strict=True):
        seen[name] = seen.get(name, 0) + 1
        segments.append(Segment(name, seen[name], number, data, chars, "utf-8"))
    msh_charset = segments[0].text(18)
    # Hex escapes are bytes in the message's character set; "ASCII" (the default) cannot hold
    # the bytes worth escaping, so UTF-8 is the reading for it (Latin-1 when that fails).
    codec = codec_for(msh_charset) or "utf-8"
    if codec != "ascii" and codec != "utf-8":
        for segment in segments:
            segment.codec = codec
    return SegmentList(segments, chars, tuple(remarks))
