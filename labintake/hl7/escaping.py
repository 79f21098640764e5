"""HL7 escaping of outbound values (writing; reading is :mod:`labintake.hl7.escapes`) for the
default encoding characters (|^~\\&, and # from v2.7).

The five delimiters become \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ (and # becomes \\P\\ from v2.7), control
characters \\Xhh\\; everything else goes as it is, since MSH-18 declares UTF-8. hl7apy
re-escapes \\X..\\ and \\.br\\ sequences it is given and writes # as \\L\\, and python-hl7
writes non-ASCII as single hex bytes, so neither library's escaper fits a UTF-8 message.
"""

from __future__ import annotations

import re

from labintake.hl7.versions import version_tuple

__all__ = ["ESCAPES", "ESCAPES_27", "components", "esc", "escapes_for", "version_tuple"]

ESCAPES: dict[int, str] = {c: f"\\X{c:02X}\\" for c in [*range(0x20), 0x7F]}
ESCAPES.update({ord("\\"): "\\E\\", ord("|"): "\\F\\", ord("^"): "\\S\\"})
ESCAPES.update({ord("&"): "\\T\\", ord("~"): "\\R\\"})
# From v2.7 MSH-2 also declares the truncation character "#", escaped \P\ (hl7apy writes
# \L\, which HL7 does not define).
ESCAPES_27 = {**ESCAPES, ord("#"): "\\P\\"}


# Whether a value holds any character of a table: one regex scan, so the usual value (plain
# letters and digits) skips `str.translate`'s per-character table look-ups.
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\x7f\\|^&~]")
_NEEDS_ESCAPE_27 = re.compile(r"[\x00-\x1f\x7f\\|^&~#]")


def escapes_for(version: str) -> dict[int, str]:
    """The escape table of `version`'s default encoding characters."""
    return ESCAPES_27 if version_tuple(version) >= (2, 7) else ESCAPES


def esc(value: str, table: dict[int, str] = ESCAPES) -> str:
    """One leaf value with the HL7 escape sequences for the default encoding characters;
    a value of nothing but white space is empty (as hl7apy has it)."""
    if not value or value.isspace():
        return ""
    if table is ESCAPES:
        return value.translate(table) if _NEEDS_ESCAPE.search(value) else value
    if table is ESCAPES_27:
        return value.translate(table) if _NEEDS_ESCAPE_27.search(value) else value
    return value.translate(table)


def components(*values: str, table: dict[int, str] = ESCAPES) -> str:
    """Escaped components joined by ^, trailing empty ones dropped."""
    return "^".join([esc(v, table) for v in values]).rstrip("^")
