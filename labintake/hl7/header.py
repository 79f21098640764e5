"""A fast reading of the MSH segment: what intake needs to decide, store and acknowledge.

No full parse and no hl7apy tree: the first segment is split on the sender's own field
separator, and only the header fields are looked at. Works on the raw bytes as received
(segment separators ``\\r``, ``\\n`` or ``\\r\\n``), decoded per MSH-18 when the header holds
non-ASCII bytes.

:func:`parse_header` reads what is there and fails only when there is no MSH segment to
speak of; :func:`validate_header` then insists on the fields intake cannot do without
(MSH-9 message type, MSH-10 control id). :func:`read_header` does both.
"""

from __future__ import annotations

from dataclasses import dataclass

from labintake.errors import HeaderError
from labintake.hl7.charset import decode_message

DEFAULT_FIELD_SEPARATOR = "|"
DEFAULT_ENCODING_CHARACTERS = "^~\\&"
_LEADING_NOISE = b" \t\r\n\x00\xef\xbb\xbf"  # whitespace and a UTF-8 byte order mark


@dataclass(frozen=True, slots=True)
class Header:
    """MSH fields as sent (field values keep their components, joined by ``^``)."""

    field_separator: str = DEFAULT_FIELD_SEPARATOR
    encoding_characters: str = DEFAULT_ENCODING_CHARACTERS
    sending_application: str = ""  # MSH-3
    sending_facility: str = ""  # MSH-4
    receiving_application: str = ""  # MSH-5
    receiving_facility: str = ""  # MSH-6
    timestamp: str = ""  # MSH-7
    message_type: str = ""  # MSH-9.1
    trigger_event: str = ""  # MSH-9.2
    message_structure: str = ""  # MSH-9.3
    control_id: str = ""  # MSH-10
    processing_id: str = ""  # MSH-11.1
    version: str = ""  # MSH-12.1
    accept_ack_type: str = ""  # MSH-15
    application_ack_type: str = ""  # MSH-16
    charset: str = ""  # MSH-18, first repetition

    @property
    def component_separator(self) -> str:
        return self.encoding_characters[0] if self.encoding_characters else "^"

    @property
    def message_code(self) -> str:
        """``TYPE^EVENT`` (``TYPE`` alone when no event is given)."""
        if self.trigger_event:
            return f"{self.message_type}^{self.trigger_event}"
        return self.message_type

    @property
    def enhanced_mode(self) -> bool:
        """The sender asked for enhanced acknowledgement (MSH-15 or MSH-16 valued)."""
        return bool(self.accept_ack_type or self.application_ack_type)


def _field(fields: list[str], number: int) -> str:
    """MSH-`number` from the split segment (``fields[0]`` is ``MSH``, ``fields[1]`` MSH-2)."""
    index = number - 1
    return fields[index] if index < len(fields) else ""


def _first_repetition(value: str, repetition: str) -> str:
    if repetition and repetition in value:
        return value.split(repetition, 1)[0]
    return value


def _components(value: str, component: str) -> list[str]:
    return value.split(component) if component else [value]


def _msh_segment(raw: bytes) -> bytes:
    start = 0
    length = len(raw)
    while start < length and raw[start] in _LEADING_NOISE:
        start += 1
    if raw[start : start + 3] != b"MSH":
        raise HeaderError(
            "the message does not start with an MSH segment",
            location="MSH",
            error_code="100",
        )
    end = len(raw)
    for separator in (b"\r", b"\n"):
        found = raw.find(separator, start)
        if 0 <= found < end:
            end = found
    return raw[start:end]


def parse_header(raw: bytes) -> Header:
    """Read the MSH segment of `raw`; raises :class:`HeaderError` when there is none."""
    segment_bytes = _msh_segment(raw)
    segment = segment_bytes.decode("latin-1")
    if len(segment) < 5:
        raise HeaderError(
            "the MSH segment has no field separator or encoding characters",
            location="MSH^1^1",
            error_code="102",
        )
    separator = segment[3]
    if separator.isalnum() or separator in " \t":
        raise HeaderError(
            f"MSH-1 field separator {separator!r} is not usable",
            location="MSH^1^1",
            error_code="102",
        )
    fields = segment.split(separator)
    encoding = fields[1]
    if not 1 <= len(encoding) <= 5 or separator in encoding or encoding.isalnum():
        raise HeaderError(
            f"MSH-2 encoding characters {encoding!r} are not usable",
            location="MSH^1^2",
            error_code="102",
        )
    repetition = encoding[1] if len(encoding) > 1 else ""
    component = encoding[0]
    charset = _first_repetition(_field(fields, 18), repetition).strip()
    if not segment.isascii():
        # Non-ASCII in the header itself (a facility name): read it in the declared charset.
        fields = decode_message(segment_bytes, charset).text.split(separator)

    def value(number: int) -> str:
        raw_value = _first_repetition(_field(fields, number), repetition)
        if component != "^" and component in raw_value:
            raw_value = raw_value.replace(component, "^")
        return raw_value.strip()

    def first(number: int) -> str:
        return _components(_first_repetition(_field(fields, number), repetition), component)[
            0
        ].strip()

    message_type = _components(_first_repetition(_field(fields, 9), repetition), component)
    return Header(
        field_separator=separator,
        encoding_characters=encoding,
        sending_application=value(3),
        sending_facility=value(4),
        receiving_application=value(5),
        receiving_facility=value(6),
        timestamp=first(7),
        message_type=message_type[0].strip().upper(),
        trigger_event=message_type[1].strip().upper() if len(message_type) > 1 else "",
        message_structure=message_type[2].strip().upper() if len(message_type) > 2 else "",
        control_id=value(10),
        processing_id=first(11),
        version=first(12),
        accept_ack_type=first(15).upper(),
        application_ack_type=first(16).upper(),
        charset=charset,
    )


def validate_header(header: Header) -> None:
    """Raise :class:`HeaderError` when MSH-9 or MSH-10 is missing."""
    if not header.control_id:
        raise HeaderError(
            "MSH-10 message control id is empty", location="MSH^1^10", error_code="101"
        )
    if not header.message_type:
        raise HeaderError("MSH-9 message type is empty", location="MSH^1^9", error_code="101")


def read_header(raw: bytes) -> Header:
    """Parse and validate the MSH segment of `raw`."""
    header = parse_header(raw)
    validate_header(header)
    return header
