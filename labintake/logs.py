"""Logging: readable lines or JSON lines, and a policy that keeps patient data and secrets out.

What a log record may carry: message control ids, sending application and facility, order
and message ids, statuses, ACK codes, finding and test codes, counts and durations. What it
never carries: patient names, birth dates, MRNs, addresses, raw HL7, passwords, keys.

The policy is enforced where records leave the process, in :class:`RedactionFilter` and the
two formatters attached to the one handler :func:`configure_logging` installs:

- structured fields (``logger.info("stored", extra={"control_id": ...})``) are kept only for
  the names in :data:`SAFE_FIELDS`; any other extra field is written as ``[redacted]`` so
  its presence is visible and the name can be reviewed and added if it is safe;
- message text and tracebacks are scrubbed: anything that looks like an HL7 segment
  (``PID|...`` up to the end of the line) becomes ``[hl7 redacted]``, passwords in URLs
  become ``***``, the configured secrets (``SECRET_KEY``, the database password) are
  replaced wherever they appear, and database errors lose their statement parameters and
  key values (``[parameters: redacted]``, ``Key (mrn)=(***)``);
- web access lines keep the path but not query values (``?patient=***``).

Plain lines look like ``2026-01-02T03:04:05.678Z INFO labintake.intake stored control_id=42``;
with ``LABINTAKE_LOG_JSON=true`` each record is one JSON object per line.

The JSON formatter is a few lines of :mod:`json` on purpose: it must emit only allowed
fields, which general-purpose JSON log formatters (that copy every extra attribute) do not do.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from labintake.config import Settings

__all__ = [
    "SAFE_FIELDS",
    "JsonFormatter",
    "PlainFormatter",
    "RedactionFilter",
    "Redactor",
    "configure_logging",
    "escape_controls",
    "redact_url",
]

# Structured fields a log record may carry as they are.
SAFE_FIELDS = frozenset(
    {
        "ack_code",
        "attempt",
        "backlog",
        "code",
        "codes",
        "connection",
        "control_id",
        "count",
        "duration_ms",
        "error_code",
        "event",
        "finding",
        "findings",
        "interface",
        "job",
        "lis",
        "location",
        "message_id",
        "message_type",
        "order_id",
        "orders",
        "peer",
        "placer_order",
        "reason",
        "receiving_application",
        "receiving_facility",
        "role",
        "sender",
        "sending_application",
        "sending_facility",
        "size",
        "status",
        "table_version",
        "user",
        "version",
        "worker",
    }
)

REDACTED = "[redacted]"
HL7_REDACTED = "[hl7 redacted]"

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "_labintake_clean",
}

# Extra fields libraries add that only repeat the message (uvicorn's coloured copy).
_DROPPED_FIELDS = frozenset({"color_message"})

# A segment id (three characters, letters/digits, starting with a letter) followed by a field
# separator and the segment's content up to the end of the line. Catches raw HL7 in messages,
# reprs of bytes (`b'\x0bMSH|^~\\&|...'`) and exception texts.
_HL7_SEGMENT = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9]{2}\|[^\r\n]*")
# A fallback for segments whose id is not at a word boundary, e.g. `\rPID|` inside a repr.
_HL7_ESCAPED_SEGMENT = re.compile(r"\\[rnx][0-9a-fA-F]{0,2}[A-Z][A-Z0-9]{2}\|[^\r\n]*")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?P<at>@)")
# Database errors quote the statement's parameters and offending key values: never log those.
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
_KEY_DETAIL = re.compile(r"(?P<key>Key \([^)\n]*\))=\([^\n]*\)")
_QUERY_VALUE = re.compile(r"(?P<key>[?&][^=&\s#]+=)[^&\s#\"]*")
# Characters a terminal or a log viewer acts on instead of showing: C0 and C1 controls (ESC
# starts colour and cursor sequences, BS and CR overwrite, LF, NEL U+0085, LINE SEPARATOR
# U+2028 and PARAGRAPH SEPARATOR U+2029 start a forged line) and the bidirectional overrides
# that reorder what is shown. Plain lines show them escaped.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(found: re.Match[str]) -> str:
    char = found.group()
    if char in _NAMED_CONTROLS:
        return _NAMED_CONTROLS[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with control characters written as escapes (``\\x1b``, ``\\n``, ``\\u2028``)."""
    return _CONTROLS.sub(_escaped, text)


def redact_url(url: str) -> str:
    """`url` with any password replaced by ``***`` (safe to print or log)."""
    try:
        parsed = make_url(url)
    except Exception:  # not an SQLAlchemy URL: fall back to the pattern
        return _URL_PASSWORD.sub(r"\g<head>***\g<at>", url)
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


class Redactor:
    """Scrubs text: HL7 segments, URL passwords, and the given secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Short values would blank out ordinary words; real secrets are not that short.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        if "://" in text:
            text = _URL_PASSWORD.sub(r"\g<head>***\g<at>", text)
        if "[parameters: " in text:
            text = _SQL_PARAMETERS.sub("[parameters: redacted]", text)
        if "Key (" in text:
            text = _KEY_DETAIL.sub(r"\g<key>=(***)", text)
        if "|" in text:
            text = _HL7_ESCAPED_SEGMENT.sub(HL7_REDACTED, text)
            text = _HL7_SEGMENT.sub(HL7_REDACTED, text)
        return text

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        secrets = [settings.secret_key]
        try:
            password = make_url(settings.database_url).password
        except Exception:
            password = None
        if password:
            secrets.append(str(password))
        return cls(secrets)


class RedactionFilter(logging.Filter):
    """Rewrites each record before any formatter sees it: clean message, reviewed extras."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_labintake_clean", False):
            return True
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad format string must not lose the record
            message = f"{record.msg!s} (unformattable arguments: {type(exc).__name__})"
        if record.name == "uvicorn.access":
            message = _QUERY_VALUE.sub(r"\g<key>***", message)
        record.msg = self.redactor(message)
        record.args = None
        for key in list(record.__dict__):
            if key in _DROPPED_FIELDS:
                del record.__dict__[key]
            elif key not in _RECORD_ATTRIBUTES and key not in SAFE_FIELDS:
                record.__dict__[key] = REDACTED
            elif key in SAFE_FIELDS:
                value = record.__dict__[key]
                if isinstance(value, str):
                    record.__dict__[key] = self.redactor(value)
        record.__dict__["_labintake_clean"] = True
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class PlainFormatter(logging.Formatter):
    """``time LEVEL logger message key=value...`` with the traceback, scrubbed.

    The message and the field values are one line each: their control characters are
    escaped, so text from a message or a request cannot colour, rewrite or forge a line.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(record.getMessage())
        line = f"{_timestamp(record)} {record.levelname} {record.name} {message}"
        fields = " ".join(f"{k}={_plain_value(v)}" for k, v in sorted(_extras(record).items()))
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        elif record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return self.redactor(line)


def _plain_value(value: object) -> str:
    text = escape_controls(str(value))
    return json.dumps(text) if (not text or " " in text or '"' in text) else text


_JSON_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029)}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, allowed fields, exc."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redactor(record.getMessage()),
        }
        for key, value in _extras(record).items():
            if isinstance(value, str):
                value = self.redactor(value)
            elif not isinstance(value, (int, float, bool)) and value is not None:
                value = self.redactor(str(value))
            document[key] = value
        if record.exc_info:
            document["exc"] = self.redactor(self.formatException(record.exc_info))
        text = json.dumps(document, ensure_ascii=False, default=str)
        # JSON leaves these raw, and readers that split lines on them (str.splitlines) would
        # cut the record in two: written as JSON escapes, they read back the same.
        return text.translate(_JSON_LINE_BREAKS)


_HANDLER_NAME = "labintake"
# Libraries whose own records are noise at INFO.
_QUIET_LOGGERS = ("sqlalchemy", "alembic.runtime.plugins", "apscheduler.executors", "hl7apy")


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Install the one labintake handler on the root logger (idempotent); returns it.

    Uvicorn and other libraries' loggers propagate to the root, so their records pass the
    same policy (run uvicorn with ``log_config=None``).
    """
    redactor = Redactor.for_settings(settings)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactionFilter(redactor))
    formatter: logging.Formatter = (
        JsonFormatter(redactor) if settings.log_json else PlainFormatter(redactor)
    )
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.captureWarnings(True)
    return handler
