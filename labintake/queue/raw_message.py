"""The raw HL7 message for reading: segment by segment, each field named (hl7apy reference).

Only hl7apy's reference tables are used (cached per segment and version), never a parsed
tree, so showing a message costs a split and a few dictionary look-ups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import hl7apy
from hl7apy.exceptions import ChildNotFound, UnsupportedVersion

from labintake.hl7.charset import decode_message

FALLBACK_VERSION = "2.5.1"
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True, slots=True)
class ShownField:
    location: str  # e.g. "PID-5"
    name: str  # e.g. "Patient Name" ("" when unknown, e.g. Z-segments)
    value: str


@dataclass(frozen=True, slots=True)
class ShownSegment:
    segment_id: str
    index: int  # 1-based occurrence of this segment id
    fields: tuple[ShownField, ...]
    text: str


@dataclass(frozen=True, slots=True)
class ShownMessage:
    segments: tuple[ShownSegment, ...]
    encoding: str
    version: str
    fallback_decoding: bool
    total_segments: int = 0  # in the message; more than `segments` when the page is cut
    cut_fields: int = 0  # field values shortened to FIELD_SHOWN characters

    @property
    def hidden_segments(self) -> int:
        return max(0, self.total_segments - len(self.segments))


# A page shows this much of a message; the whole of it is at /api/orders/{id}/message. A
# 1 MiB message shown in full would be a page of tens of megabytes.
SEGMENTS_SHOWN = 200
FIELD_SHOWN = 2000


@lru_cache(maxsize=1024)
def field_names(segment_id: str, version: str) -> tuple[str, ...]:
    """Long names of the segment's fields in `version`, by position (empty when unknown)."""
    for candidate in (version, FALLBACK_VERSION):
        try:
            reference = hl7apy.load_reference(segment_id, "Segment", candidate)
        except (ChildNotFound, UnsupportedVersion, KeyError, ValueError):
            continue
        names = []
        for _, structure, *_rest in reference[1]:
            long_name = structure[3] if len(structure) > 3 else ""
            names.append(str(long_name or "").replace("_", " ").title())
        return tuple(names)
    return ()


def show_message(
    raw: bytes,
    declared_charset: str = "",
    max_segments: int = SEGMENTS_SHOWN,
    max_field: int = FIELD_SHOWN,
) -> ShownMessage:
    """The first `max_segments` segments, each field value cut to `max_field` characters."""
    decoded = decode_message(raw, declared_charset)
    every = [seg for seg in re.split(r"\r\n|\r|\n", decoded.text) if seg.strip()]
    lines = every[:max_segments]
    cut = 0
    version = FALLBACK_VERSION
    separator = "|"
    if lines and lines[0].startswith("MSH") and len(lines[0]) > 3:
        separator = lines[0][3]
        msh = lines[0].split(separator)
        if len(msh) > 11 and msh[11]:
            version = msh[11].split("^", 1)[0]
    counts: dict[str, int] = {}
    segments = []
    for line in lines:
        parts = line.split(separator)
        segment_id = parts[0][:3]
        counts[segment_id] = counts.get(segment_id, 0) + 1
        names = field_names(segment_id, version) if _SEGMENT_ID.match(segment_id) else ()
        fields = []
        # MSH-1 is the separator itself: MSH fields are numbered one higher than split parts.
        offset = 1 if segment_id == "MSH" else 0
        if segment_id == "MSH":
            fields.append(ShownField("MSH-1", names[0] if names else "", separator))
        for position, value in enumerate(parts[1:], start=1 + offset):
            if not value:
                continue
            name = names[position - 1] if 0 < position <= len(names) else ""
            if len(value) > max_field:
                value = value[:max_field] + " …"
                cut += 1
            fields.append(ShownField(f"{segment_id}-{position}", name, value))
        text = line if len(line) <= max_field else line[:max_field] + " …"
        segments.append(ShownSegment(segment_id, counts[segment_id], tuple(fields), text))
    return ShownMessage(
        tuple(segments),
        decoded.encoding,
        version,
        decoded.fallback,
        total_segments=len(every),
        cut_fields=cut,
    )
