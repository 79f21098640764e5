"""MSH-18 character sets: from the HL7 names (table 0211) to Python codecs, with a safe fallback.

The raw bytes are always kept; decoding only serves reading. When the declared character set
cannot decode the bytes, UTF-8 is tried, then Windows-1252, then Latin-1 (which never fails),
and the result says which one was used so the fallback can be reported.

UTF-16 and UTF-32 need a second look: almost any even-length byte string "decodes" as
UTF-16, so ASCII bytes under a ``UNICODE UTF-16`` MSH-18 used to come out as CJK garbage.
HL7 segment names and delimiters are ASCII, which in UTF-16/32 always carries NUL bytes; a
message without a single NUL byte is not UTF-16/32, whatever MSH-18 says, and is read by the
fallback chain instead, with a note. Intake and reading both decode through here, and intake
logs the mismatch when the message arrives (:func:`wide_charset_mismatch`).
"""

from __future__ import annotations

from dataclasses import dataclass

# HL7 table 0211 names -> Python codec names. Empty MSH-18 means ASCII by the standard;
# in practice senders mean "whatever my system uses", so the fallback chain handles it.
HL7_CHARSETS: dict[str, str] = {
    "": "ascii",
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "BIG-5": "big5",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc-kr",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
}

FALLBACKS = ("utf-8", "cp1252", "latin-1")
_WIDE = {"utf-16": "UTF-16", "utf-32": "UTF-32"}


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    encoding: str  # the Python codec that produced `text`
    declared: str  # MSH-18 as sent (first repetition)
    fallback: bool  # True when the declared character set could not be used
    reason: str = ""  # why not, when it is not simply that decoding failed

    @property
    def note(self) -> str:
        if not self.fallback:
            return ""
        why = self.reason or "could not decode the message"
        return f"MSH-18 {self.declared or '(empty)'!r} {why}; read as {self.encoding}"


def codec_for(declared: str) -> str | None:
    """The Python codec for an MSH-18 value (first repetition), or None when unknown."""
    name = declared.split("~", 1)[0].strip().upper()
    return HL7_CHARSETS.get(name)


def wide_charset_mismatch(raw: bytes, declared: str) -> str | None:
    """Why `raw` cannot be the UTF-16/UTF-32 that `declared` names (None when it can be, or
    when `declared` names no such character set). A cheap test: one scan for a NUL byte."""
    codec = codec_for(declared)
    if codec not in _WIDE or b"\x00" in raw:
        return None
    return f"does not fit the bytes (no NUL byte: not {_WIDE[codec]})"


def decode_message(raw: bytes, declared: str = "") -> Decoded:
    """Decode `raw` per MSH-18, falling back safely; never raises."""
    codec = codec_for(declared)
    first = declared.split("~", 1)[0].strip()
    reason = wide_charset_mismatch(raw, declared) or ""
    if codec is not None and not reason:
        try:
            return Decoded(raw.decode(codec), codec, first, fallback=False)
        except UnicodeDecodeError:
            pass
    for candidate in FALLBACKS:
        try:
            text = raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        # An empty MSH-18 with non-ASCII UTF-8 bytes is common and not worth a warning.
        quiet = codec == "ascii" and candidate == "utf-8" and not first
        return Decoded(text, candidate, first, fallback=not quiet, reason=reason)
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def encode_reply(text: str, declared: str = "") -> bytes:
    """Encode an outgoing message (an ACK) in the sender's declared character set."""
    codec = codec_for(declared) or "utf-8"
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return text.encode(codec, errors="replace")
