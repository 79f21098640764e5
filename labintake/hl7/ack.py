"""Acknowledgements built by string assembly, mirroring the sender's header.

The reply speaks the sender's dialect: same field separator and encoding characters, same
version, sending and receiving sides swapped, encoded in the sender's MSH-18 character set.
MSA-2 echoes the sender's control id; MSH-10 is a new id of our own.

Original mode answers AA / AE / AR. When the sender values MSH-15 or MSH-16 (enhanced
mode) the commit acknowledgement is CA / CE / CR, sent as MSH-15 asks (AL always, NE never,
ER on errors only, SU on success only).

Errors are the :class:`~labintake.errors.HL7Error` tree: ERR carries the location, the HL7
table 0357 code and the text. v2.5 and later use ERR-2 (location), ERR-3 (code), ERR-4
(severity) and ERR-8 (text); v2.3 and v2.4 put location and code in ERR-1 and the text in
MSA-3.
"""

from __future__ import annotations

import time
import uuid

from labintake.errors import HL7Error
from labintake.hl7.charset import encode_reply
from labintake.hl7.header import Header
from labintake.hl7.versions import version_numbers

ACCEPT = "A"
ERROR = "E"
REJECT = "R"

OUR_APPLICATION = "LABINTAKE"
DEFAULT_VERSION = "2.5.1"
SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)

# HL7 table 0357, message error condition codes.
TABLE_0357 = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


def new_control_id() -> str:
    """A message control id (MSH-10) for every message we send, ACKs, replies and releases:
    unique across processes and instances, 20 characters (the field's length). An outbound
    message keeps its id for all its retries."""
    return "LI" + uuid.uuid4().hex[:18].upper()


def reply_version(header: Header) -> str:
    """The version we answer in: the sender's when we speak it, else 2.5.1."""
    return header.version if header.version in SUPPORTED_VERSIONS else DEFAULT_VERSION


def ack_code(header: Header, outcome: str) -> str:
    """``AA``/``AE``/``AR`` in original mode, ``CA``/``CE``/``CR`` in enhanced mode."""
    return ("C" if header.enhanced_mode else "A") + outcome


def reply_wanted(header: Header, outcome: str) -> bool:
    """Whether the sender asked for a commit acknowledgement with this outcome (MSH-15)."""
    if not header.enhanced_mode:
        return True
    condition = header.accept_ack_type or "AL"
    if condition == "NE":
        return False
    if condition == "ER":
        return outcome != ACCEPT
    if condition == "SU":
        return outcome == ACCEPT
    return True


def escape(text: str, header: Header) -> str:
    """Escape `text` for a field value in the sender's delimiters; line breaks become spaces."""
    encoding = header.encoding_characters
    escape_char = encoding[2] if len(encoding) > 2 else "\\"
    pairs = [(escape_char, "E"), (header.field_separator, "F")]
    pairs += [
        (char, code)
        for index, (char, code) in enumerate(zip(encoding, "SR_TP", strict=False))
        if index != 2
    ]
    for delimiter, code in pairs:
        if delimiter in text:
            text = text.replace(delimiter, f"{escape_char}{code}{escape_char}")
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _mirror(value: str, header: Header) -> str:
    component = header.component_separator
    return value.replace("^", component) if component != "^" else value


def _location(location: str, header: Header) -> str:
    if not location:
        return ""
    parts = location.split("^")
    if len(parts) == 1:
        parts.append("1")
    return header.component_separator.join(escape(part, header) for part in parts)


def _err_segment(error: HL7Error, header: Header, version: tuple[int, ...]) -> str:
    fs = header.field_separator
    component = header.component_separator
    encoding = header.encoding_characters
    code = error.error_code
    code_text = TABLE_0357.get(code, "")
    if version < (2, 5):
        subcomponent = encoding[3] if len(encoding) > 3 else "&"
        parts = [*error.location.split("^")[:3], "", "", ""][:3] if error.location else []
        if parts and not parts[1]:
            parts[1] = "1"
        parts = [escape(part, header) for part in parts] or ["", "", ""]
        code_value = subcomponent.join((code, code_text, "HL70357"))
        return "ERR" + fs + component.join((*parts, code_value))
    severity = "E"
    return (
        f"ERR{fs}{fs}{_location(error.location, header)}{fs}"
        f"{component.join((code, code_text, 'HL70357'))}{fs}{severity}{fs}{fs}{fs}{fs}"
        f"{escape(error.text, header)}"
    )


def build_ack_text(
    header: Header,
    code: str,
    error: HL7Error | None = None,
    *,
    control_id: str | None = None,
    timestamp: str | None = None,
) -> str:
    """The acknowledgement as text (segments ended by ``\\r``)."""
    fs = header.field_separator
    component = header.component_separator
    version = reply_version(header)
    version_tuple = version_numbers(version)
    event = header.trigger_event
    # Message structure ACK exists from v2.3.1; before that MSH-9 is ACK alone.
    message_type = component.join(("ACK", event, "ACK")) if version_tuple >= (2, 3, 1) else "ACK"
    sending_application = _mirror(header.receiving_application, header) or OUR_APPLICATION
    msh = [
        "MSH",
        header.encoding_characters,
        sending_application,
        _mirror(header.receiving_facility, header),
        _mirror(header.sending_application, header),
        _mirror(header.sending_facility, header),
        timestamp or time.strftime("%Y%m%d%H%M%S+0000", time.gmtime()),
        "",
        message_type,
        control_id or new_control_id(),
        header.processing_id or "P",
        version,
    ]
    if header.charset:
        msh += ["", "", "", "", "", header.charset]
    msa = ["MSA", code, escape(header.control_id, header)]
    if error is not None and version_tuple < (2, 5):
        msa.append(escape(error.text, header))
    segments = [fs.join(msh), fs.join(msa)]
    if error is not None:
        segments.append(_err_segment(error, header, version_tuple))
    return "\r".join(segments) + "\r"


def build_ack(
    header: Header,
    code: str,
    error: HL7Error | None = None,
    *,
    control_id: str | None = None,
    timestamp: str | None = None,
) -> bytes:
    """The acknowledgement as bytes in the sender's MSH-18 character set."""
    text = build_ack_text(header, code, error, control_id=control_id, timestamp=timestamp)
    if text.isascii():
        return text.encode("ascii")
    return encode_reply(text, header.charset)
