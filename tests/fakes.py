"""Stand-ins for the clock and the LIS connection, so tests cross leases and backoffs at once.

`ShiftedClock` is the real clock plus an offset the test moves forward: rows written by code
that reads the system clock stay in step with it. `MemoryTransport` answers the sender from
memory with whatever the test's responder says, and keeps what was sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from labintake.db import utcnow
from labintake.hl7.ack_reply import AckReply
from labintake.release.connection import DeliveryFailure

Responder = Callable[[bytes, str], AckReply]


class ShiftedClock:
    """The system clock, `advance`d by the test: nothing waits."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def now(self) -> datetime:
        return utcnow() + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def accept(_message: bytes, control_id: str) -> AckReply:
    return AckReply("AA", control_id, "")


def unreachable(_message: bytes, _control_id: str) -> AckReply:
    raise DeliveryFailure("cannot connect to the LIS: refused", unreachable=True)


@dataclass
class MemoryTransport:
    """A LIS connection in memory: `responder` decides each answer (AA by default)."""

    responder: Responder = accept
    sent: list[str] = field(default_factory=list)  # control ids, in the order sent
    closed: int = 0

    def exchange(self, message: bytes, control_id: str) -> AckReply:
        self.sent.append(control_id)
        return self.responder(message, control_id)

    def close(self) -> None:
        self.closed += 1
