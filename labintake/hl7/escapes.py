"""HL7 v2 encoding characters and escape sequences (v2.5.1 section 2.7, v2.7 truncation).

python-hl7 has an `unescape`, but it maps `\\.br\\` to a segment separator, drops unknown
sequences without a word, reads `\\X..\\` one byte per character whatever the character set,
and logs through a deprecated call; reading orders needs each of those done differently, so
the (small) decoding lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

# Formatting commands (section 2.7.6) that only change layout: dropped, or a line break.
_LINE_BREAKS = {".br", ".sp", ".ce"}
_LAYOUT_ONLY = {".fi", ".nf", ".in", ".ti", ".sk"}
# One-letter sequences: the encoding character each stands for ("" for highlighting on/off).
_SIMPLE = {
    "F": "field",
    "S": "component",
    "T": "subcomponent",
    "R": "repetition",
    "E": "escape",
    "P": "truncation",
    "H": "",
    "N": "",
}


@dataclass(frozen=True, slots=True)
class EncodingCharacters:
    """MSH-1 and MSH-2: field, component, repetition, escape, subcomponent, truncation."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # v2.7 adds a fifth character, usually "#"

    @classmethod
    def from_msh(cls, field_separator: str, msh2: str) -> EncodingCharacters:
        """From MSH-1 and MSH-2 as sent (two to five characters; defaults fill the gaps)."""
        chars = list(msh2)
        defaults = ["^", "~", "\\", "&", ""]
        values = [chars[i] if i < len(chars) else defaults[i] for i in range(5)]
        return cls(field_separator, *values)


def unescape(
    value: str,
    chars: EncodingCharacters,
    codec: str = "utf-8",
    remarks: list[str] | None = None,
) -> str:
    """Decode the escape sequences of one leaf value.

    \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ give back the encoding characters; \\Xhh..\\ is
    hex-encoded bytes decoded with `codec` (Latin-1 when they are not valid there), less
    any NUL character (PostgreSQL text cannot hold one, and no field means it: dropped on
    every database alike, and said so in `remarks`);
    \\.br\\, \\.sp\\ and \\.ce\\ become a line break; \\H\\, \\N\\ and the other layout
    commands are dropped. Character-set switches (\\C..\\, \\M..\\) and locally defined
    sequences (\\Z..\\) cannot be honoured: they are dropped and said so in `remarks`.
    An escape character without its closing partner is kept as text.
    """
    esc = chars.escape
    if not esc or esc not in value:
        return value
    # Split once on the escape character: text, sequence, text, sequence, ... text. An even
    # number of parts means the last escape character was never closed: kept as text.
    parts = value.split(esc)
    out = [parts[0]]
    last = len(parts) - 1
    for i in range(1, last, 2):
        out.append(_decode_sequence(parts[i], chars, codec, remarks))
        out.append(parts[i + 1])
    if last % 2 == 1:
        out.append(esc + parts[last])
    return "".join(out)


def _decode_sequence(
    seq: str, chars: EncodingCharacters, codec: str, remarks: list[str] | None
) -> str:
    if len(seq) == 1 and seq in _SIMPLE:
        return getattr(chars, _SIMPLE[seq]) if _SIMPLE[seq] else ""
    if seq[:1] == "X" and len(seq) > 1:
        return _hex(seq[1:], codec, remarks)
    command = seq[:3]
    if seq.startswith(".") and command in _LINE_BREAKS:
        count = _count(seq[3:])
        return "\n" * (count if command == ".sp" else 1)
    if seq.startswith(".") and command in _LAYOUT_ONLY:
        return " " if command == ".sk" else ""
    if remarks is not None:
        remarks.append(f"escape sequence {chars.escape}{seq}{chars.escape} not supported: dropped")
    return ""


def _hex(digits: str, codec: str, remarks: list[str] | None) -> str:
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        if remarks is not None:
            remarks.append(f"escape sequence X{digits} is not hexadecimal: kept as text")
        return "X" + digits
    try:
        text = data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        text = data.decode("latin-1")
    if "\x00" in text:
        text = text.replace("\x00", "")
        if remarks is not None:
            remarks.append(f"escape sequence \\X{digits}\\ gives a NUL character: dropped")
    return text


def _count(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() and 0 < int(text) <= 20 else 1
