"""The content digest that tells a resend from a different message under the same control id.

A sender that resends a message often stamps a new MSH-7 (date/time of message) and may end
its segments with ``\\r\\n`` one time and ``\\r`` the next; neither changes what the message
says. The digest is SHA-256 over the message with segment ends normalised to ``\\r``, trailing
segment separators and blanks dropped, and MSH-7 emptied. Every other byte counts: a changed
patient, test or diagnosis, or a changed MSH-18, gives another digest. Computing it costs a
few microseconds per kilobyte, on the event loop.
"""

from __future__ import annotations

import hashlib

from labintake.mllp.framing import normalise_segments

# MSH-7 is the sixth field after "MSH" + field separator: MSH|enc|3|4|5|6|7
_MSH7_INDEX = 6


def content_digest(message: bytes) -> str:
    """Hex SHA-256 of `message` with MSH-7 emptied and segment ends normalised."""
    text = normalise_segments(message).rstrip(b"\r\n \t")
    end = text.find(b"\r")
    msh, rest = (text, b"") if end < 0 else (text[:end], text[end:])
    if msh.startswith(b"MSH") and len(msh) > 3:
        separator = msh[3:4]
        fields = msh.split(separator)
        if len(fields) > _MSH7_INDEX:
            fields[_MSH7_INDEX] = b""
            msh = separator.join(fields)
    return hashlib.sha256(msh + rest).hexdigest()
