"""Sign-in rate limits per client address and per account, before any password is hashed.

Every sign-in attempt counts against two moving windows (the `limits` library's moving-window
strategy): one for the client address it came from, one for the account name it tried. Over
either, the attempt is refused at once (TooManyAttemptsError: HTTP 429 with Retry-After),
without touching the database or the hashing slots.

An address or account already over its window is refused earlier still: the web app's
sign-in gate (`labintake.web.signin_gate`) asks `refusal()` before the request reaches
FastAPI, so a flood from one address costs a look-up in a dictionary and a short fixed
answer per request, not a form parse, a template and a signed token. `refusal()` counts
what `admit()` would have counted for the refused attempt, and no more; `admit()` (in the
route) counts the attempts that pass.

Refused attempts are counted in aggregate rather than logged one by one: the first refusal
per key and minute is logged, at most REPORTED_KEYS_PER_MINUTE such lines a minute in all (a
flood from many addresses cannot flood the log), and a summary line a minute later gives
how many attempts were refused, from how many addresses and for how many accounts
(`sign_in_throttled_summary`).

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
import threading
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from labintake.errors import TooManyAttemptsError

log = logging.getLogger("labintake.auth")

DEFAULT_PER_ADDRESS = "30/minute"
DEFAULT_PER_ACCOUNT = "10/minute"
_REPORT = parse("1/minute")
# Lines naming one throttled address or account, per minute and web process, at most.
REPORTED_KEYS_PER_MINUTE = 10
_REPORT_ANY = parse(f"{REPORTED_KEYS_PER_MINUTE}/minute")
# The summary of refused attempts covers this many seconds from the first refusal.
SUMMARY_SECONDS = 60.0


class SignInThrottle:
    """The two windows of one web process, and its count of refusals (thread-safe)."""

    def __init__(
        self,
        per_address: str = DEFAULT_PER_ADDRESS,
        per_account: str = DEFAULT_PER_ACCOUNT,
        *,
        summary_seconds: float = SUMMARY_SECONDS,
    ) -> None:
        self.per_address = parse_rate(per_address)
        self.per_account = parse_rate(per_account)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._summary_seconds = summary_seconds
        self._lock = threading.Lock()
        self._refused: dict[str, dict[str, int]] = {"address": {}, "account": {}}
        self.refused_total = 0  # since the process started

    def admit(self, client: str, username: str) -> None:
        """Count this attempt; TooManyAttemptsError when the address or the account is over."""
        self._hit(self.per_address, "address", client)
        self._hit(self.per_account, "account", _account_key(username))

    def refusal(self, client: str, username: str | None = None) -> TooManyAttemptsError | None:
        """The refusal `admit` would give an attempt from `client` (for `username`, when
        known) that is over a window already; None when `admit` is still to decide.

        Counts what `admit` would have counted for the refused attempt: nothing when the
        address is over; the attempt against the address when only the account is over.
        """
        if not self._limiter.test(self.per_address, "sign-in", "address", client):
            return self._refuse(self.per_address, "address", client)
        if username is None:
            return None
        account = _account_key(username)
        if self._limiter.test(self.per_account, "sign-in", "account", account):
            return None
        try:
            self._hit(self.per_address, "address", client)
        except TooManyAttemptsError as over:  # the address filled up meanwhile
            return over
        return self._refuse(self.per_account, "account", account)

    def _hit(self, rate: RateLimitItem, kind: str, key: str) -> None:
        if not self._limiter.hit(rate, "sign-in", kind, key):
            raise self._refuse(rate, kind, key)

    def _refuse(self, rate: RateLimitItem, kind: str, key: str) -> TooManyAttemptsError:
        reset = self._limiter.get_window_stats(rate, "sign-in", kind, key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        self._count(kind, key)
        if self._limiter.hit(_REPORT, "sign-in-report", kind, key) and self._limiter.hit(
            _REPORT_ANY, "sign-in-report", "any"
        ):
            log.warning(
                f"sign-in attempts over {rate} per {kind}; refused for {wait} s",
                extra={"peer" if kind == "address" else "user": key, "event": "sign_in_throttled"},
            )
        return TooManyAttemptsError(
            f"too many sign-in attempts; try again in {wait} seconds", retry_after=wait
        )

    def _count(self, kind: str, key: str) -> None:
        with self._lock:
            self.refused_total += 1
            first = not any(self._refused.values())
            counts = self._refused[kind]
            counts[key] = counts.get(key, 0) + 1
        if first:
            timer = threading.Timer(self._summary_seconds, self._summarize)
            timer.daemon = True
            timer.start()

    def _summarize(self) -> None:
        """Log how many attempts were refused since the first of this period, and reset."""
        with self._lock:
            addresses, accounts = self._refused["address"], self._refused["account"]
            self._refused = {"address": {}, "account": {}}
        by_address, by_account = sum(addresses.values()), sum(accounts.values())
        busiest = max(addresses, key=addresses.__getitem__, default="")
        log.warning(
            f"{by_address + by_account} sign-in attempts refused over the rate limits in "
            f"{self._summary_seconds:g} s: {by_address} from {len(addresses)} addresses "
            f"(most from {busiest or 'none'}), {by_account} for {len(accounts)} accounts",
            extra={"event": "sign_in_throttled_summary"},
        )


def _account_key(username: str) -> str:
    return username.strip().casefold()


def parse_rate(text: str) -> RateLimitItem:
    """A rate like ``30/minute`` or ``100/hour``; ValueError when it is not one."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a rate like '30/minute': {exc}") from None
