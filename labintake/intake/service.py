"""The intake service: one complete MLLP message in, acknowledgement bytes out.

The server hands every frame to :meth:`Intake.handle` (tests call it directly). The header
is read without a full parse, the message is checked against what this lab takes, stored
with its acknowledgement through the group-commit writer, and only after the commit are the
acknowledgement bytes returned. Decisions:

====================================================  =====  ===========================
situation                                             ACK    stored as
====================================================  =====  ===========================
no MSH segment, unusable separators                   AR     not stored (no control id)
MSH-10 control id empty                               AE     not stored (no control id)
MSH-9 message type empty                              AE     ``rejected``
message type not accepted (table 0357: 200 / 201)     AR     ``rejected``
HL7 version not supported (203)                       AR     ``rejected``
allow-list on and sender not under ``interfaces/``    AR     ``rejected``
binding enforced and the connection does not prove    AR     ``rejected`` (103)
the sender's MSH-3/MSH-4 (see below)
otherwise                                             AA     ``received``
the database refused the write                        AE     nothing: resend (207)
same key as a stored message, same content            the original acknowledgement
same key, different content (a conflict)              AE     ``rejected`` (205), or as
                                                             ``DUPLICATE_CONFLICT_ACK``
====================================================  =====  ===========================

The key is (proven sender identity, MSH-3, MSH-4, MSH-10). The identity is what the
connection proved: ``interface:<name>`` when the interface's ``[connection]`` binding (source
addresses, TLS client-certificate subject) matched and is enforced; ``unproven:<address>``
when an enforced binding did not match (the message is refused); ``""`` when no binding is in
force for the sender. So a message forged from elsewhere never shares the real sender's key
and cannot take its acknowledgement. "Same content" compares a digest of the message with
MSH-7 emptied (:mod:`labintake.intake.digest`). See docs/security-model.md.

In enhanced mode (MSH-15/16 valued) the codes are CA / CE / CR and the reply is sent as
MSH-15 asks; an empty reply (``b""``) means the sender asked for none. A storage failure is
always answered, whatever MSH-15 says, so that nothing is lost silently.

Logs: every message that was not simply accepted (rejected, errored, a duplicate, refused
unstored) gets a line of its own; accepted messages are counted, and once a minute (and at
shutdown) one line sums up what each sender sent (:class:`IntakeTally`). A line per
accepted message is at DEBUG: at INFO, writing it on the event loop cost a fifth of the
listener's throughput, and every message is in the inbound store anyway.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from labintake.config import Settings
from labintake.db import utcnow
from labintake.errors import (
    ConfigurationError,
    FramingError,
    HeaderError,
    HL7Error,
    StorageError,
)
from labintake.hl7.ack import (
    ACCEPT,
    ERROR,
    REJECT,
    ack_code,
    build_ack,
    reply_wanted,
)
from labintake.hl7.charset import decode_message, wide_charset_mismatch
from labintake.hl7.header import Header, parse_header
from labintake.intake.digest import content_digest
from labintake.intake.journal import IntakeJournal, journal_in_use
from labintake.intake.policy import Decision, IntakePolicy
from labintake.intake.writer import GroupCommitWriter, PendingRow, StoreResult
from labintake.interfaces import InterfaceRegistry, load_interfaces
from labintake.mllp.framing import OversizedMessage, normalise_segments
from labintake.mllp.server import PeerIdentity
from labintake.statuses import MessageStatus

log = logging.getLogger("labintake.intake")

_FALLBACK_HEADER = Header()
_ERROR_CODES = {"AE", "CE"}
_ACCEPTED_CODES = {"AA", "CA"}
_REJECT_CODES = {"AR", "CR"}
SUMMARY_SECONDS = 60.0
_LIMITS = {
    "sending_application": 227,
    "sending_facility": 227,
    "receiving_application": 227,
    "receiving_facility": 227,
    "control_id": 199,
    "message_type": 40,
    "version": 20,
    "charset": 40,
    "peer": 200,
}


def _fit(value: str, column: str) -> str:
    """A header value made storable: no NUL characters, cut to the column's length."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[: _LIMITS[column]]


def _stored_text(code: str, duplicate: bool) -> str:
    if duplicate:
        return "duplicate, original acknowledgement returned"
    if code in _ACCEPTED_CODES:
        return "stored"
    if code in _ERROR_CODES:
        return "stored as refused with an error"
    return "stored as rejected"


@dataclass(slots=True)
class IntakeTally:
    """What intake stored since the last summary line, by sender and ACK code."""

    started: float = field(default_factory=time.monotonic)
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)

    def add(self, sender: str, code: str, duplicate: bool) -> None:
        if duplicate:
            self.duplicates[sender] += 1
        else:
            self.codes[sender, code] += 1

    def due(self, now: float, every: float = SUMMARY_SECONDS) -> bool:
        return now - self.started >= every

    def summary(self, now: float) -> str | None:
        """``stored 1,204 messages in the last 60 s: NORTHEPIC/NSH 1,200 AA, 2 AR (1
        duplicate)...``, or None when nothing came; then starts counting afresh."""
        seconds, self.started = now - self.started, now
        if not self.codes and not self.duplicates:
            return None
        senders = sorted({sender for sender, _ in self.codes} | set(self.duplicates))
        parts = []
        for sender in senders:
            codes = ", ".join(
                f"{count:,} {code}"
                for (who, code), count in sorted(self.codes.items())
                if who == sender
            )
            repeats = self.duplicates[sender]
            if repeats:
                plural = "s" if repeats > 1 else ""
                codes = (
                    f"{codes} ({repeats:,} duplicate{plural})"
                    if codes
                    else (f"{repeats:,} duplicate{plural}")
                )
            parts.append(f"{sender} {codes}")
        total = sum(self.codes.values())
        self.codes.clear()
        self.duplicates.clear()
        return f"stored {total:,} messages in the last {seconds:.0f} s: " + "; ".join(parts)


class Intake:
    """Frames in, acknowledgements out; stores every message it can before answering."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        interfaces: InterfaceRegistry | None = None,
        writer: GroupCommitWriter | None = None,
        journal: bool = False,
    ) -> None:
        """`journal`: commit to intake's journal beside a SQLite file (when the settings keep
        one; see :mod:`labintake.intake.journal`), the way `labintake serve` runs."""
        self.settings = settings
        self.engine = engine
        self.interfaces = (
            interfaces if interfaces is not None else load_interfaces(settings.interfaces_dir)
        )
        self.policy = IntakePolicy(
            settings.accepted_message_types,
            self.interfaces,
            enforce_sender_allowlist=settings.enforce_sender_allowlist,
            enforce_sender_binding=settings.enforce_sender_binding,
        )
        self._warn_unbound_interfaces()
        self.journal = (
            IntakeJournal.beside(engine)
            if journal and writer is None and journal_in_use(settings, engine)
            else None
        )
        self.writer = (
            writer if writer is not None else GroupCommitWriter(engine, journal=self.journal)
        )
        self.tally = IntakeTally()
        self._prepared = False

    def prepare(self) -> None:
        """Make the journal ready, moving into the database what a stop or a crash left in
        it (before the worker process starts moving what comes; once)."""
        if self.journal is not None and not self._prepared:
            try:
                self.journal.prepare()
            except OperationalError as exc:
                raise ConfigurationError(
                    f"cannot use intake's journal {self.journal.path} beside the database: "
                    f"{exc.orig}; make its folder writable, or set LABINTAKE_INTAKE_JOURNAL=false"
                ) from exc
        self._prepared = True

    def start(self) -> None:
        """Start the writer (the journal prepared first)."""
        self.prepare()
        self.writer.start()

    def busy(self, within: float = 0.5) -> bool:
        """Whether messages were stored in the last `within` seconds (others may yield)."""
        return time.monotonic() - self.writer.last_commit_at < within

    def close(self) -> None:
        """Finish the commits in flight and stop the writer (blocking); empty the journal."""
        self.writer.stop()
        if self.journal is not None:
            self.journal.stop()
        self.log_summary()

    def log_summary(self) -> None:
        """The summary line of what was stored since the last one (none when nothing was)."""
        text = self.tally.summary(time.monotonic())
        if text is not None:
            log.info(text)

    async def __aenter__(self) -> Intake:
        self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()

    async def handle(self, frame: bytes, peer: str, identity: PeerIdentity | None = None) -> bytes:
        """The acknowledgement for one complete message (``b""`` when none was asked for)."""
        reading = normalise_segments(frame)
        try:
            header = parse_header(reading)
        except HeaderError as exc:
            self._log_unstored(exc, peer, len(frame))
            return build_ack(_FALLBACK_HEADER, "AR", exc)
        if header.charset:
            self._check_charset(reading, header, peer)
        decision = self.policy.decide(header, identity)
        code = ack_code(header, decision.outcome)
        ack = build_ack(header, code, decision.error)
        if decision.binding_mismatch is not None:
            self._log_binding(header, peer, decision)
        if not header.control_id:
            assert decision.error is not None
            self._log_unstored(decision.error, peer, len(frame))
            return ack if reply_wanted(header, decision.outcome) else b""
        values = self._values(frame, header, peer, decision, code, ack)
        values["content_digest"] = content_digest(reading)
        row = PendingRow(values, ack, partial(self._conflict, header, values))
        try:
            result = await self.writer.store(row)
        except StorageError as exc:
            return self._storage_failure(header, peer, exc)
        self._log_stored(header, peer, code, result)
        outcome = decision.outcome
        if result.duplicate or result.conflict_of is not None:
            stored = _stored_code(result.ack)
            outcome = (
                ERROR if stored in _ERROR_CODES else REJECT if stored in _REJECT_CODES else ACCEPT
            )
        return result.ack if reply_wanted(header, outcome) else b""

    def handle_oversized(self, message: OversizedMessage, peer: str) -> bytes:
        """AR for a message over the size limit; its bytes were never kept, so nothing is stored."""
        try:
            header = parse_header(normalise_segments(message.head))
        except HeaderError:
            header = _FALLBACK_HEADER
        error = FramingError(
            f"message of {message.size} bytes exceeds the limit of "
            f"{self.settings.max_message_bytes} bytes; not stored",
            error_code="207",
        )
        log.warning(
            "oversized message refused",
            extra={
                "control_id": header.control_id,
                "sender": f"{header.sending_application}/{header.sending_facility}",
                "size": message.size,
                "peer": peer,
                "ack_code": ack_code(header, REJECT),
            },
        )
        return build_ack(header, ack_code(header, REJECT), error)

    # -- helpers --------------------------------------------------------------------------
    def _conflict(
        self, header: Header, values: dict[str, Any], original_id: int, original_ack: bytes
    ) -> tuple[dict[str, Any], bytes]:
        """The row and acknowledgement for a message that reused a stored control id with
        other content (called by the writer thread; pure)."""
        text = (
            f"control id {header.control_id} was already used by message {original_id} with "
            "different content; this message is kept as a conflict and not read"
        )
        choice = self.settings.duplicate_conflict_ack
        if choice == "original":
            ack = original_ack
            code = _stored_code(original_ack)
        else:
            code = ack_code(header, ERROR if choice == "AE" else REJECT)
            ack = build_ack(header, code, HL7Error(text, location="MSH^1^10", error_code="205"))
        conflict = {
            **values,
            "conflict_digest": values["content_digest"],
            "ack": ack,
            "ack_code": code,
            "status": MessageStatus.REJECTED,
            "error": text,
        }
        return conflict, ack

    @staticmethod
    def _check_charset(message: bytes, header: Header, peer: str) -> None:
        """Log an MSH-18 that cannot be right for the bytes (read by the fallback later)."""
        mismatch = wide_charset_mismatch(message, header.charset)
        if mismatch is not None:
            log.warning(
                f"MSH-18 {header.charset!r} {mismatch}; the message will be read as "
                f"{decode_message(message, header.charset).encoding}",
                extra={
                    "control_id": header.control_id,
                    "sender": f"{header.sending_application}/{header.sending_facility}",
                    "peer": peer,
                },
            )

    def _warn_unbound_interfaces(self) -> None:
        for interface in self.interfaces:
            enforced = self.policy.enforced(interface)
            if enforced and not interface.connection.declared:
                log.warning(
                    "sender binding is on but the interface declares no [connection]: its "
                    "messages are refused",
                    extra={"interface": interface.name},
                )
            elif not enforced and interface.connection.declared:
                log.info(
                    "interface binding declared but not enforced: mismatches are only logged",
                    extra={"interface": interface.name},
                )

    def _log_binding(self, header: Header, peer: str, decision: Decision) -> None:
        refused = decision.outcome == REJECT and decision.sender_identity.startswith("unproven:")
        log.warning(
            "sender binding refused the message"
            if refused
            else "sender binding mismatch (not enforced; message taken)",
            extra={
                "control_id": header.control_id,
                "sender": f"{header.sending_application}/{header.sending_facility}",
                "interface": decision.interface,
                "peer": peer,
                "reason": decision.binding_mismatch,
            },
        )

    def _values(
        self, frame: bytes, header: Header, peer: str, decision: Decision, code: str, ack: bytes
    ) -> dict[str, object]:
        accepted = decision.outcome == ACCEPT
        return {
            "received_at": utcnow(),
            "sending_application": _fit(header.sending_application, "sending_application"),
            "sending_facility": _fit(header.sending_facility, "sending_facility"),
            "receiving_application": _fit(header.receiving_application, "receiving_application"),
            "receiving_facility": _fit(header.receiving_facility, "receiving_facility"),
            "control_id": _fit(header.control_id, "control_id"),
            "message_type": _fit(header.message_code, "message_type"),
            "version": _fit(header.version, "version"),
            "charset": _fit(header.charset, "charset"),
            "peer": _fit(peer, "peer"),
            "sender_identity": decision.sender_identity,
            "interface": decision.interface,
            "raw": frame,
            "ack_code": code,
            "ack": ack,
            "status": (MessageStatus.RECEIVED if accepted else MessageStatus.REJECTED),
            "error": None if decision.error is None else decision.error.text,
            "read_at": None,
            "read_attempts": 0,
            "raw_purged_at": None,
        }

    def _storage_failure(self, header: Header, peer: str, exc: StorageError) -> bytes:
        code = ack_code(header, ERROR)
        log.error(
            "message not stored; answered with an error so the sender resends",
            extra={
                "control_id": header.control_id,
                "sender": f"{header.sending_application}/{header.sending_facility}",
                "peer": peer,
                "ack_code": code,
                "reason": str(exc),
            },
        )
        error = HL7Error("could not store the message; please resend", error_code="207")
        return build_ack(header, code, error)

    def _log_stored(self, header: Header, peer: str, code: str, result: StoreResult) -> None:
        sender = f"{header.sending_application}/{header.sending_facility}"
        if result.conflict_of is not None:
            self.tally.add(sender, _stored_code(result.ack), result.duplicate)
            log.warning(
                "control id reused with different content; kept as a conflict",
                extra={
                    "control_id": header.control_id,
                    "sender": sender,
                    "message_id": result.message_id,
                    "original_id": result.conflict_of,
                    "ack_code": _stored_code(result.ack),
                    "peer": peer,
                },
            )
            return
        self.tally.add(sender, code, result.duplicate)
        level = logging.DEBUG if code in _ACCEPTED_CODES and not result.duplicate else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                _stored_text(code, result.duplicate),
                extra={
                    "control_id": header.control_id,
                    "sender": sender,
                    "message_type": header.message_code,
                    "ack_code": _stored_code(result.ack) if result.duplicate else code,
                    "peer": peer,
                },
            )
        now = time.monotonic()
        if self.tally.due(now):
            self.log_summary()

    @staticmethod
    def _log_unstored(error: HL7Error, peer: str, size: int) -> None:
        log.warning(
            "message without a usable header refused; not stored",
            extra={"reason": error.text, "peer": peer, "size": size},
        )


def _stored_code(ack: bytes) -> str:
    """MSA-1 of a stored acknowledgement."""
    start = ack.find(b"MSA")
    return ack[start + 4 : start + 6].decode("ascii", "replace") if start >= 0 else ""
