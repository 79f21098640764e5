"""The clock seam: code that waits for leases, backoffs and claims to expire asks a `Clock`.

The service runs on :data:`SYSTEM_CLOCK`; tests hand in a clock they move forward themselves,
so crossing a lease or a backoff takes no real time.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from labintake.db import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC (what the database stores)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for deadlines inside this process)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()
