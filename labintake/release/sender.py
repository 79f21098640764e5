"""The sender: delivers the outbox to the LIS over one persistent MLLP connection.

Each round claims the due messages (oldest first, one per patient at a time), sends them one
by one waiting for each ACK, and records the outcomes every `commit_every` messages:

- AA / CA: the message is delivered and the order `delivered`;
- AE / AR (CE / CR): the order goes back to `held` with the LIS's error text as a finding;
- no answer, refused, reset: retried later with exponential backoff and jitter, with the
  same message control id, until `max_attempts`, then a dead letter (re-sendable).

When the LIS cannot be reached at all, every message of the round counts an attempt and
backs off; when one message fails on an open connection (timeout, reset), it alone counts
an attempt and the rest of the round is given back untouched for the next round.

A sender that dies mid-round leaves claims that expire; whoever takes over sends the same
control ids again, which the LIS recognises as repeats.

Time comes from a :class:`~labintake.clock.Clock` and the connection is a
:class:`~labintake.release.connection.Transport`, both injectable (tests cross leases and
backoffs by moving their clock, and may answer from memory instead of a socket).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from labintake.clock import SYSTEM_CLOCK, Clock
from labintake.config import Settings
from labintake.hl7.ack_reply import REFUSED
from labintake.release.connection import DeliveryFailure, Endpoint, LisConnection, Transport
from labintake.release.delivery import Outcome, RetryPolicy, claim_due, release_claims
from labintake.release.outcomes import record_outcomes
from labintake.statuses import DeliveryOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SenderOptions:
    batch_size: int = 200
    commit_every: int = 100
    lease_seconds: float = 120.0


def endpoint_from_settings(settings: Settings, host: str | None = None) -> Endpoint | None:
    """The LIS endpoint, or None when no LIS is configured."""
    lis_host = host or settings.lis_host
    if not lis_host:
        return None
    return Endpoint(
        host=lis_host,
        port=settings.lis_port,
        tls=settings.lis_tls,
        tls_ca=settings.lis_tls_ca,
        tls_cert=settings.lis_tls_cert,
        tls_key=settings.lis_tls_key,
        connect_timeout=settings.lis_connect_timeout_seconds,
        ack_timeout=settings.lis_ack_timeout_seconds,
    )


def policy_from_settings(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.lis_max_attempts,
        base_seconds=settings.lis_backoff_base_seconds,
        cap_seconds=settings.lis_backoff_cap_seconds,
    )


# While the destination cannot be reached, the longest wait between two connection attempts.
UNREACHABLE_PAUSE_CAP_SECONDS = 30.0


class Sender:
    """Delivers one destination's outbox; call `deliver_due` repeatedly (it is one round)."""

    def __init__(
        self,
        engine: Engine,
        endpoint: Endpoint | None,
        policy: RetryPolicy | None = None,
        *,
        destination: str = "lis",
        options: SenderOptions | None = None,
        name: str | None = None,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """Sends to `endpoint` over MLLP, or through `transport` when given."""
        if transport is None:
            if endpoint is None:
                raise ValueError("a sender needs an endpoint or a transport")
            transport = LisConnection(endpoint)
        self.engine = engine
        self.policy = policy or RetryPolicy()
        self.destination = destination
        self.options = options or SenderOptions()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.transport = transport
        self.clock = clock
        self._round = 0
        self._lock = threading.Lock()
        # Rounds in a row that could not reach the destination, and (clock.monotonic) when
        # the next may try: while it is unreachable, one connection attempt per pause.
        self._unreachable = 0
        self._paused_until = 0.0
        # Called after each ACK, before outcomes are committed (tests use it to stop a
        # sender mid-round the way a crash would).
        self.after_exchange: Callable[[int], None] | None = None

    def deliver_due(self) -> int:
        """One round: claim, send, record. Returns how many messages were handled
        (delivered, refused or put back for a retry); 0 means nothing was due, or the
        destination could not be reached and the sender waits before trying it again."""
        with self._lock:
            if self.clock.monotonic() < self._paused_until:
                return 0
            return self._round_locked()

    def _round_locked(self) -> int:
        self._round += 1
        token = f"{self.name}#{self._round}"
        entries = claim_due(
            self.engine,
            token,
            destination=self.destination,
            limit=self.options.batch_size,
            lease_seconds=self.options.lease_seconds,
            now=self.clock.now(),
        )
        if not entries:
            return 0
        claims = {entry.id: entry for entry in entries}
        handled = 0
        pending: list[Outcome] = []
        untried: list[int] = []
        # Stop well inside the claim lease, so no other sender can take a message over
        # while this one may still be sending it.
        stop_at = self.clock.monotonic() + self.options.lease_seconds / 2
        for index, entry in enumerate(entries):
            if self.clock.monotonic() > stop_at:
                untried = [e.id for e in entries[index:]]
                break
            try:
                reply = self.transport.exchange(entry.message, entry.control_id)
            except DeliveryFailure as exc:
                log.warning("delivery of %s failed: %s", entry.control_id, exc)
                # The message tried counts an attempt; the rest of the round goes back
                # untouched. Unreachable (nothing sent, nothing could be): the others would
                # fail the same way, and counting an attempt on each would turn a backlog into
                # dead letters within one backoff schedule; the sender waits instead.
                pending.append(Outcome(entry.id, DeliveryOutcome.RETRY, text=str(exc)))
                untried = [e.id for e in entries[index + 1 :]]
                if exc.unreachable:
                    # The fixed half of the retry policy's step for this many rounds in a row
                    # (the message tried is due again by then), at most the cap (delivery
                    # resumes soon after the destination is back).
                    self._unreachable += 1
                    pause = min(
                        self.policy.step(self._unreachable) / 2, UNREACHABLE_PAUSE_CAP_SECONDS
                    )
                    self._paused_until = self.clock.monotonic() + pause
                    log.warning(
                        "%s unreachable (%d round(s) in a row); next attempt in %.1f s, "
                        "%d message(s) given back untried",
                        self.destination,
                        self._unreachable,
                        pause,
                        len(untried),
                    )
                break
            self._unreachable = 0
            if reply.accepted:
                pending.append(Outcome(entry.id, DeliveryOutcome.DELIVERED, ack_code=reply.code))
            elif reply.code in REFUSED:
                pending.append(Outcome(entry.id, DeliveryOutcome.REFUSED, reply.code, reply.text))
            else:
                pending.append(
                    Outcome(entry.id, DeliveryOutcome.RETRY, text=f"unknown ACK code {reply.code}")
                )
            if self.after_exchange is not None:
                self.after_exchange(index)
            if len(pending) >= self.options.commit_every:
                record_outcomes(
                    self.engine, token, pending, self.policy, now=self.clock.now(), claims=claims
                )
                handled += len(pending)
                pending = []
        if pending:
            record_outcomes(
                self.engine, token, pending, self.policy, now=self.clock.now(), claims=claims
            )
            handled += len(pending)
        release_claims(self.engine, token, untried)
        return handled

    def close(self) -> None:
        self.transport.close()


def deliver_until_idle(sender: Sender, max_rounds: int = 10_000) -> int:
    """Rounds until nothing is due; returns how many messages were handled."""
    total = 0
    for _ in range(max_rounds):
        handled = sender.deliver_due()
        total += handled
        if handled == 0:
            break
    return total
