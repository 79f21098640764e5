"""Sign-in rate limits per client address and per account, before any password is hashed.

Every sign-in attempt counts against two moving windows (the `limits` library's moving-window
strategy): one for the client address it came from, one for the account name it tried. Over
either, the attempt is refused at once (TooManyAttemptsError: HTTP 429 with Retry-After),
without touching the database or the hashing slots, so a flood from one address costs one
dictionary look-up per request. The first refusal per key and minute is logged.

The windows are kept in the memory of the web process: they guard that process's CPU and
memory, which is what a flood threatens, and cost no database write per request (on SQLite
every write competes with the MLLP intake for the one write lock). With several web
processes or instances each keeps its own windows, so an address may make that many times
the limit in all; guessing one account's password stays bounded across all of them by the
account lockout, which is counted in the database (see `labintake.auth.signin`).
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from labintake.errors import TooManyAttemptsError

log = logging.getLogger("labintake.auth")

DEFAULT_PER_ADDRESS = "30/minute"
DEFAULT_PER_ACCOUNT = "10/minute"
_REPORT = parse("1/minute")


def parse_rate(text: str) -> RateLimitItem:
    """A rate like ``30/minute`` or ``100/hour``; ValueError when it is not one."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a rate like '30/minute': {exc}") from None


class SignInThrottle:
    """The two windows of one web process (thread-safe)."""

    def __init__(
        self, per_address: str = DEFAULT_PER_ADDRESS, per_account: str = DEFAULT_PER_ACCOUNT
    ) -> None:
        self.per_address = parse_rate(per_address)
        self.per_account = parse_rate(per_account)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def admit(self, client: str, username: str) -> None:
        """Count this attempt; TooManyAttemptsError when the address or the account is over."""
        self._check(self.per_address, "address", client)
        self._check(self.per_account, "account", username.strip().casefold())

    def _check(self, rate: RateLimitItem, kind: str, key: str) -> None:
        if self._limiter.hit(rate, "sign-in", kind, key):
            return
        reset = self._limiter.get_window_stats(rate, "sign-in", kind, key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        if self._limiter.hit(_REPORT, "sign-in-report", kind, key):
            log.warning(
                f"sign-in attempts over {rate} per {kind}; refused for {wait} s",
                extra={"peer" if kind == "address" else "user": key, "event": "sign_in_throttled"},
            )
        raise TooManyAttemptsError(
            f"too many sign-in attempts; try again in {wait} seconds", retry_after=wait
        )
